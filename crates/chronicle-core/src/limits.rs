//! Every limit Chronicle enforces, in one place.
//!
//! Limits are checked at the edge (decoding, command construction, the append path) so that no
//! oversized or malformed input reaches storage. Relations between limits are asserted at compile
//! time below: changing one limit without the others fails the build rather than a test.

/// Largest payload (plaintext event body) one entry may carry, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = 32 * 1024;
/// Largest encoded entry, in bytes. Kept far below sled's blob threshold (a quarter of its
/// 512 KiB segment) so that an entry always lives in sled's main `db` file, which the append path
/// `fdatasync`s; see `docs/FORMAT.md`, "Durability".
pub const ENTRY_BYTES_MAX: usize = 36 * 1024;
/// Most commands in one append request (one atomic batch).
pub const BATCH_ENTRIES_MAX: usize = 512;
/// Most payload bytes in one append request.
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Longest event type name, in bytes (ASCII).
pub const EVENT_TYPE_LEN_MAX: usize = 64;
/// Longest principal id, in bytes (ASCII).
pub const PRINCIPAL_ID_LEN_MAX: usize = 64;
/// Longest court-order reference, in bytes (UTF-8).
pub const COURT_ORDER_LEN_MAX: usize = 256;
/// Longest idempotency key, in bytes. At least one byte is required.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 64;
/// Most entries returned by one read call.
pub const READ_PAGE_ENTRIES_MAX: usize = 10_000;
/// Longest legal authority or consent reference a request may state, in bytes (UTF-8).
pub const AUTHORITY_LEN_MAX: usize = 256;
/// Most items one history, recipients or other listing call returns in one page.
pub const LIST_PAGE_ITEMS_MAX: u32 = 1_000;
/// Items in a listing page when the caller does not say.
pub const LIST_PAGE_ITEMS_DEFAULT: u32 = 100;
/// Latest time a request may name ("as effective at", "as recorded at", "since"), in
/// microseconds since the Unix epoch: the last microsecond of 9999-12-31, the last day a record's
/// dates can hold.
pub const TIME_MICROS_MAX: i64 = 253_402_300_799_999_999;
/// Refusals of one principal logged one by one, at most, in a burst; beyond it, refusals are
/// counted and logged together, and the principal is refused every call until it slows (see the
/// records crate's refusal log). A background check answered "no record" is a refusal, and must
/// count like any other (were some "not found" answers not counted, the rate at which the limit
/// is reached would tell which): the rate is sized for a screening company's volume (10 a
/// second, 864,000 a day), and bounds what one registered principal can add to the log.
pub const REFUSALS_LOGGED_BURST: u32 = 600;
/// Refusals of one principal logged one by one per minute, at most, after a burst.
pub const REFUSALS_LOGGED_PER_MINUTE: u32 = 600;
/// Most keys one principal may hold over its lifetime (rotations included).
pub const PRINCIPAL_KEYS_MAX: usize = 64;

/// Bytes of an entry that are not statement or payload: header, length prefixes, signature.
pub const ENTRY_OVERHEAD_BYTES_MAX: usize = 1 + 8 + 8 + 32 + 32 + 8 + 2 + 4 + 64;
/// Largest encoded statement (see `entry::Statement`).
pub const STATEMENT_BYTES_MAX: usize = 1
    + 16
    + 8
    + 1
    + EVENT_TYPE_LEN_MAX
    + 1
    + PRINCIPAL_ID_LEN_MAX
    + 8
    + 2
    + COURT_ORDER_LEN_MAX
    + 1
    + 32
    + 1
    + 16
    + 1
    + IDEMPOTENCY_KEY_LEN_MAX
    + 1
    + 32;
/// Sealing adds a nonce, a salt and an AEAD tag around the payload.
pub const ENVELOPE_OVERHEAD_BYTES: usize = 24 + 32 + 16;

const _: () = assert!(
    ENTRY_OVERHEAD_BYTES_MAX + STATEMENT_BYTES_MAX + ENVELOPE_OVERHEAD_BYTES + PAYLOAD_BYTES_MAX <= ENTRY_BYTES_MAX
);
// sled 0.34 moves any item over segment_size / 4 (128 KiB at the default 512 KiB) to a separate
// blob file; the durability point syncs blob files too, but keeping entries well under keeps the
// common path to one fdatasync.
const _: () = assert!(ENTRY_BYTES_MAX * 3 < 128 * 1024);
const _: () = assert!(PAYLOAD_BYTES_MAX <= BATCH_BYTES_MAX);
const _: () = assert!(LIST_PAGE_ITEMS_DEFAULT <= LIST_PAGE_ITEMS_MAX);
const _: () = assert!(LIST_PAGE_ITEMS_MAX as usize <= READ_PAGE_ENTRIES_MAX);
const _: () = assert!(STATEMENT_BYTES_MAX <= u16::MAX as usize);
