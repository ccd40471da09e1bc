"""A client we did not write, talking to Chronicle.

Python's grpcio with stubs generated from proto/ by grpcio-tools; the command's statement built
from docs/FORMAT.md alone and signed with the `cryptography` package's Ed25519; mutual TLS with the
credentials `chronicle principal add` writes. Run by tests/python_client.rs against a real server:

    python chronicle_client_test.py STUBS_DIR ADDR CLERK_CREDS EMPLOYER_CREDS
"""

import hashlib
import json
import os
import struct
import sys
import time

import blake3
import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

stubs, addr, clerk_dir, employer_dir = sys.argv[1:5]
sys.path.insert(0, stubs)
from chronicle.v1 import ledger_pb2 as pb  # noqa: E402
from chronicle.v1 import ledger_pb2_grpc as rpc  # noqa: E402


def read(d, name):
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


def channel(creds_dir):
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(creds_dir, "ca.pem"),
        private_key=read(creds_dir, "tls.key.pem"),
        certificate_chain=read(creds_dir, "cert.pem"),
    )
    return grpc.secure_channel(addr, creds)


def bytes8(b):
    assert 0 < len(b) < 256
    return bytes([len(b)]) + b


def bytes16(b):
    return struct.pack(">H", len(b)) + b


def statement(stream, event_type, author, key_id, idem, commitment, effective_us):
    """docs/FORMAT.md, "Statement (what the author signs), version 1"."""
    return (
        bytes([1])
        + stream
        + struct.pack(">q", effective_us)
        + bytes8(event_type.encode())
        + bytes8(author.encode())
        + key_id
        + bytes16(b"")  # no court order
        + bytes([0])  # no causation
        + bytes([0])  # no correlation
        + bytes8(idem)
        + bytes([1])  # sealed payload
        + commitment
    )


def check(cond, what):
    if not cond:
        print("FAILED:", what)
        sys.exit(1)
    print("ok:", what)


clerk_id = read(clerk_dir, "principal").decode().strip()
key = serialization.load_pem_private_key(read(clerk_dir, "signing.key.pem"), password=None)
assert isinstance(key, Ed25519PrivateKey)
public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
key_id = blake3.blake3(b"chronicle.key-id.v1\n" + public).digest()[:8]

clerk = channel(clerk_dir)
employer = channel(employer_dir)

# The standard health service.
health = health_pb2_grpc.HealthStub(clerk)
status = health.Check(health_pb2.HealthCheckRequest(service="chronicle.v1.Ledger")).status
check(status == health_pb2.HealthCheckResponse.SERVING, "health: chronicle.v1.Ledger is SERVING")

# Server reflection (v1alpha, what this grpcio speaks) lists Chronicle's services.
refl = reflection_pb2_grpc.ServerReflectionStub(clerk)
answers = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
services = [s.name for a in answers for s in a.list_services_response.service]
check("chronicle.v1.Ledger" in services and "chronicle.v1.Records" in services, f"reflection lists {services}")

def signed(stream, event):
    """A records command for `stream`, built and signed here from the format document alone."""
    payload = json.dumps(event).encode()
    salt = os.urandom(32)
    commitment = blake3.blake3(b"chronicle.payload-commitment.v1\n" + salt + payload).digest()
    event_type = "records." + event["event"]
    st = statement(stream, event_type, clerk_id, key_id, os.urandom(16), commitment, int(time.time() * 1e6))
    return st, salt, payload, key.sign(b"chronicle.statement.v1\n" + st)


# Enroll a subject.
subject = os.urandom(16)
enrolled = {"event": "subject_enrolled", "sid": "PY-1", "name": {"last": "Lovelace", "first": "Ada"}, "dob": "1985-12-10"}
st, salt, payload, signature = signed(subject, enrolled)
request = pb.SubmitRequest(
    stream=subject,
    expected=pb.ExpectedVersion(no_stream=True),
    commands=[pb.SignedCommand(statement=st, salt=salt, payload=payload, signature=signature)],
)
ledger = rpc.LedgerStub(clerk)
first = ledger.Submit(request)
check(len(first.entries) == 1 and not first.duplicate, f"submitted at position {first.entries[0].position}")
again = ledger.Submit(pb.SubmitRequest(stream=subject, commands=request.commands))
check(again.duplicate and again.entries[0].position == first.entries[0].position, "a retry is answered, not appended")

# A signature over other bytes is refused.
forged = pb.SignedCommand(statement=st, salt=salt, payload=payload, signature=key.sign(b"something else"))
try:
    ledger.Submit(pb.SubmitRequest(stream=subject, commands=[forged]))
    check(False, "a forged signature was accepted")
except grpc.RpcError as e:
    check(e.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT), f"forged signature: {e.code()}")

# Read it back, for an administrative purpose, inside the bureau.
records = rpc.RecordsStub(clerk)
r = records.GetRecord(pb.RecordRequest(sid="PY-1", purpose=pb.PURPOSE_A))
view = json.loads(r.view_json)
check(view["identity"]["name"]["last"] == "Lovelace", "the record reads back")
check(r.content_hash == blake3.blake3(r.view_json).hexdigest(), "content_hash is BLAKE3 of exactly the bytes")

# Its history, one page.
items = records.History(pb.HistoryRequest(stream=subject, purpose=pb.PURPOSE_A)).items
check(
    any(i.event_type == "records.subject_enrolled" and i.author == clerk_id for i in items),
    f"a history page of {len(items)} item(s), the enrollment by {clerk_id} among them",
)

# No purpose: refused as invalid.
try:
    records.GetRecord(pb.RecordRequest(sid="PY-1"))
    check(False, "a read without a purpose was answered")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"missing purpose: {e.code()} {e.details()}")

# An employer asking for a criminal-justice purpose: refused by the policy.
try:
    rpc.RecordsStub(employer).GetRecord(pb.RecordRequest(sid="PY-1", purpose=pb.PURPOSE_C))
    check(False, "the employer was given a purpose-C record")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.PERMISSION_DENIED, f"employer, purpose C: {e.code()}")

# ...and the refusal is in the subject's history.
items = records.History(pb.HistoryRequest(stream=subject, purpose=pb.PURPOSE_A)).items
denied = [json.loads(i.event_json) for i in items if i.event_type == "records.access_denied"]
check(len(denied) == 1 and denied[0]["requester"] == "acme.hr", "the refusal was logged as access_denied")

# An arrest on two charges, then an employer's check: both are recent, so both are reportable.
case = os.urandom(16)
charge = lambda seq, statute, literal: {  # noqa: E731
    "seq": seq, "statute": statute, "offense_code": "9999", "literal": literal, "level": "misdemeanor", "counts": 1,
}
arrest = {
    "event": "arrest_recorded", "subject": subject.hex(), "tracking_number": "OTN-PY-1", "agency_ori": "PY0000001",
    "arrest_date": time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400 * 30)),
    "charges": [charge(1, "18 Pa.C.S. 3921", "THEFT BY UNLAWFUL TAKING"), charge(2, "18 Pa.C.S. 3503", "CRIMINAL TRESPASS")],
}
st, salt, payload, signature = signed(case, arrest)
ledger.Submit(pb.SubmitRequest(stream=case, commands=[pb.SignedCommand(statement=st, salt=salt, payload=payload, signature=signature)]))
employer_records = rpc.RecordsStub(employer)
before = employer_records.BackgroundCheck(pb.RecordRequest(sid="PY-1", purpose=pb.PURPOSE_E, authority="consent PY-7"))
check(b"CRIMINAL TRESPASS" in before.view_json, "before the seal, the employer's check shows the trespass charge")
time.sleep(0.01)
before_seal_us = int(time.time() * 1e6)
time.sleep(0.01)

# The trespass charge is sealed.
seal = {"event": "relief_ordered", "order_id": "SEAL-PY-1", "kind": "seal", "scope": {"charges": [2]},
        "statute": "18 Pa.C.S. 9122.2", "audiences": []}
st, salt, payload, signature = signed(case, seal)
ledger.Submit(pb.SubmitRequest(stream=case, commands=[pb.SignedCommand(statement=st, salt=salt, payload=payload, signature=signature)]))

# The employer asks for the record as it was recorded before the seal: the seal in force now
# still withholds the charge, and nothing in the answer says that anything was withheld.
for field, value in (("as_recorded_micros", before_seal_us), ("as_effective_micros", before_seal_us)):
    r = employer_records.BackgroundCheck(pb.RecordRequest(sid="PY-1", purpose=pb.PURPOSE_E, **{field: value}))
    view = json.loads(r.view_json)
    charges = [c for cy in view["cycles"] for c in cy["charges"]]
    check(b"TRESPASS" not in r.view_json and len(charges) == 1, f"{field} before the seal: the sealed charge is not shown")
    check(charges[0]["seq"] == 1 and "suppressed" not in view, f"{field}: no count or gap says a charge was withheld")
    check(r.dissemination_position > 0, f"{field}: the release was logged at {r.dissemination_position}")


def root_from_path(leaf, index, size, path):
    """RFC 9162, 2.1.3.2: the root an inclusion proof leads to."""
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return r if sn == 0 else None


# Proofs: the employer may not read log entries, only check the inclusion of one it holds.
position = first.entries[0].position
try:
    rpc.ProofsStub(employer).GetInclusionProof(pb.InclusionProofRequest(position=position))
    check(False, "the employer was given a log entry's bytes")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.PERMISSION_DENIED, f"the employer asking for entry bytes: {e.code()}")
full = rpc.ProofsStub(clerk).GetInclusionProof(pb.InclusionProofRequest(position=position))
leaf = hashlib.sha256(b"\x00" + full.leaf).digest()
held = rpc.ProofsStub(employer).GetInclusionProof(
    pb.InclusionProofRequest(position=position, tree_size=full.tree_size, leaf_hash=leaf)
)
check(held.leaf == b"" and len(held.audit_path) == len(full.audit_path), "with the leaf hash: an audit path, no entry bytes")
root = root_from_path(leaf, position, full.tree_size, list(full.audit_path))
check(root is not None and root == root_from_path(leaf, position, held.tree_size, list(held.audit_path)),
      "the employer's audit path leads to the same root as the clerk's")
try:
    rpc.ProofsStub(employer).GetInclusionProof(
        pb.InclusionProofRequest(position=position, tree_size=full.tree_size, leaf_hash=bytes(32))
    )
    check(False, "a wrong leaf hash was answered")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.NOT_FOUND, f"a leaf hash the entry does not have: {e.code()}")

print("python client: all checks passed")
