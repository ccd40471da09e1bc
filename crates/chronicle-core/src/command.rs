//! Commands: what a client signs and submits, before the ledger gives it a place in the log.
//!
//! A [`Command`] can only be built by signing a [`Draft`] or by [`Command::from_parts`], which
//! decodes the statement and checks the payload against its commitment and limits. The signature
//! itself is checked by the store against the principal registry, because only the registry knows
//! which key is valid for the author at the moment of appending.

use crate::entry::{EventType, PayloadKind, References, Statement};
use crate::error::{DecodeError, FieldError};
use crate::hash::Hash;
use crate::ids::{StreamId, Timestamp};
use crate::limits::PAYLOAD_BYTES_MAX;
use crate::payload::{SALT_LEN, commitment};
use crate::sign::Signer;

/// An unsigned event, as an author composes it.
#[derive(Clone, Debug)]
pub struct Draft {
    /// The stream to append to.
    pub stream: StreamId,
    /// The event type.
    pub event_type: EventType,
    /// When it takes legal effect.
    pub effective_time: Timestamp,
    /// Authority and links.
    pub refs: References,
    /// Public or sealed.
    pub payload_kind: PayloadKind,
    /// The event body.
    pub payload: Vec<u8>,
}

/// A signed command, checked for shape; not yet checked against the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    statement: Statement,
    statement_bytes: Vec<u8>,
    salt: [u8; SALT_LEN],
    payload: Vec<u8>,
    signature: [u8; 64],
}

/// A command is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The statement does not decode.
    #[error("statement: {0}")]
    Statement(#[from] DecodeError),
    /// A field is out of bounds.
    #[error(transparent)]
    Field(#[from] FieldError),
    /// The payload is larger than [`PAYLOAD_BYTES_MAX`].
    #[error("payload of {len} bytes exceeds the limit of {max}")]
    PayloadTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The salt and payload do not hash to the signed commitment.
    #[error("payload does not match the statement's commitment")]
    CommitmentMismatch,
}

impl Command {
    /// Signs a draft with a fresh salt.
    pub fn sign(signer: &Signer, draft: Draft) -> Result<Command, CommandError> {
        Command::sign_with_salt(signer, draft, crate::random_array())
    }

    /// Signs a draft with a given salt (known-answer tests only need this).
    pub fn sign_with_salt(signer: &Signer, draft: Draft, salt: [u8; SALT_LEN]) -> Result<Command, CommandError> {
        check_payload(&draft.payload)?;
        let statement = Statement {
            stream: draft.stream,
            event_type: draft.event_type,
            effective_time: draft.effective_time,
            author: signer.principal().clone(),
            key_id: signer.key_id(),
            refs: draft.refs,
            payload_kind: draft.payload_kind,
            commitment: commitment(&salt, &draft.payload),
        };
        let statement_bytes = statement.encode()?;
        let signature = signer.sign_statement(&statement_bytes);
        Ok(Command { statement, statement_bytes, salt, payload: draft.payload, signature })
    }

    /// Rebuilds a command from the parts a client sent (over the network, from an import file).
    pub fn from_parts(
        statement_bytes: Vec<u8>,
        salt: [u8; SALT_LEN],
        payload: Vec<u8>,
        signature: [u8; 64],
    ) -> Result<Command, CommandError> {
        check_payload(&payload)?;
        let statement = Statement::decode(&statement_bytes)?;
        if !commitment(&salt, &payload).ct_eq(&statement.commitment) {
            return Err(CommandError::CommitmentMismatch);
        }
        Ok(Command { statement, statement_bytes, salt, payload, signature })
    }

    /// The decoded statement.
    pub fn statement(&self) -> &Statement {
        &self.statement
    }
    /// The statement bytes the author signed.
    pub fn statement_bytes(&self) -> &[u8] {
        &self.statement_bytes
    }
    /// The payload salt.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }
    /// The event body.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
    /// The author's signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
    /// A digest identifying this exact command (statement and signature), to recognise retries.
    pub fn digest(&self) -> Hash {
        request_digest(&self.statement_bytes, &self.signature)
    }
}

/// The digest identifying a command by its statement and signature: what the store's idempotency
/// records keep, computed alike from a command and from the entry it became.
pub fn request_digest(statement_bytes: &[u8], signature: &[u8; 64]) -> Hash {
    Hash::of(crate::hash::DOMAIN_REQUEST, &[statement_bytes, signature])
}

fn check_payload(payload: &[u8]) -> Result<(), CommandError> {
    if payload.len() > PAYLOAD_BYTES_MAX {
        return Err(CommandError::PayloadTooLarge { len: payload.len(), max: PAYLOAD_BYTES_MAX });
    }
    Ok(())
}
