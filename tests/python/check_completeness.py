"""Checks an evidence bundle's completeness proof with code written from docs/FORMAT.md alone
(nothing of Chronicle's own): the checkpoint's signature under the log key, the heads
commitment's inclusion in the checkpoint's tree and its place as the tree's last entry, its
payload against the commitment its entry signs, and the heads-map proofs of the stream's and the
registry's heads against the committed root, which must be the last entries the bundle holds.

Usage: check_completeness.py BUNDLE.json LOG_KEY
Prints "complete: ..." and exits 0, or "INCOMPLETE: ..." and exits 1.
"""

import base64
import hashlib
import json
import struct
import sys

import blake3
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

LEDGER_STREAM = bytes(15) + b"\x02"
REGISTRY_STREAM = bytes(15) + b"\x01"


class Incomplete(Exception):
    pass


def need(cond, what):
    if not cond:
        raise Incomplete(what)


def verify_note(note, vkey):
    """c2sp.org/signed-note with an Ed25519 key: returns the note's text once a line verifies."""
    name, key_id_hex, key_b64 = vkey.split("+", 2)  # the base64 key may hold "+" itself
    key = base64.b64decode(key_b64)
    need(key[0] == 1 and len(key) == 33, "the log key is not an Ed25519 verifier key")
    key_id = hashlib.sha256(name.encode() + b"\n" + key).digest()[:4]
    need(key_id.hex() == key_id_hex, "the log key's id does not match its key")
    text, _, sigs = note.partition("\n\n")
    text += "\n"
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            continue
        signer, sig_b64 = line[2:].rsplit(" ", 1)
        sig = base64.b64decode(sig_b64)
        if signer == name and sig[:4] == key_id:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(sig[4:], text.encode())
            return text
    raise Incomplete("no signature by the log key")


def root_from_path(leaf, index, size, path):
    """RFC 9162, 2.1.3.2."""
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


class Reader:
    def __init__(self, b):
        self.b, self.i = b, 0

    def take(self, n):
        need(self.i + n <= len(self.b), "an entry is cut short")
        out = self.b[self.i:self.i + n]
        self.i += n
        return out

    def u(self, n):
        return int.from_bytes(self.take(n), "big")


def parse_entry(b):
    """Entry and statement, version 1 (docs/FORMAT.md)."""
    r = Reader(b)
    need(r.u(1) == 1, "entry format version")
    e = {"position": r.u(8), "stream_version": r.u(8)}
    r.take(32 + 32 + 8)  # previous hashes, recorded time
    st = Reader(r.take(r.u(2)))
    need(st.u(1) == 1, "statement version")
    e["stream"] = st.take(16)
    st.take(8)  # effective time
    e["event_type"] = st.take(st.u(1)).decode()
    st.take(st.u(1))  # author
    st.take(8)  # key id
    st.take(st.u(2))  # court order
    if st.u(1):
        st.take(32)
    if st.u(1):
        st.take(16)
    st.take(st.u(1))  # idempotency key
    e["kind"] = st.u(1)
    e["commitment"] = st.take(32)
    e["envelope"] = r.take(r.u(4))
    r.take(64)
    need(r.i == len(b), "trailing bytes after an entry")
    e["hash"] = blake3.blake3(b"chronicle.entry.v1\n" + b).digest()
    return e


def head_leaf(stream, version, entry_hash):
    return hashlib.sha256(b"\x00" + stream + struct.pack(">Q", version) + entry_hash).digest()


def fold(stream, path, end):
    """The heads map: siblings from the root down, along the stream id's bits (most significant
    bit of the first byte first)."""
    need(len(path) <= 128, "a heads path longer than any")
    h = end
    for depth in reversed(range(len(path))):
        sibling = bytes.fromhex(path[depth])
        bit = (stream[depth // 8] >> (7 - depth % 8)) & 1
        h = hashlib.sha256(b"\x01" + (sibling + h if bit else h + sibling)).digest()
    return h


def check_head(proof, root, stream, entries, what):
    need(bytes.fromhex(proof["stream"]) == stream, f"the {what}'s head proof is about another stream")
    version, entry_hash = proof["version"], bytes.fromhex(proof["hash"])
    need(fold(stream, proof["path"], head_leaf(stream, version, entry_hash)) == root,
         f"the {what}'s head proof does not lead to the committed root")
    by_version = {e["stream_version"]: e for e in entries}
    need(set(range(version + 1)) <= set(by_version), f"the {what} lacks versions up to its committed head {version}")
    need(by_version[version]["hash"] == entry_hash, f"the {what}'s version {version} is not its committed head")
    return version


def main(path, log_key):
    bundle = json.load(open(path))
    text = verify_note(bundle["checkpoint"], log_key)
    _origin, size, root_b64 = text.splitlines()[:3]
    size, tree_root = int(size), base64.b64decode(root_b64)

    def included(p):
        leaf = base64.b64decode(p["leaf"])
        need(p["tree_size"] == size, "a proof for another tree size")
        r = root_from_path(hashlib.sha256(b"\x00" + leaf).digest(), p["leaf_index"], size,
                           [base64.b64decode(x) for x in p["audit_path"]])
        need(r == tree_root, f"entry {p['leaf_index']} is not in the checkpoint's tree")
        e = parse_entry(leaf)
        need(e["position"] == p["leaf_index"], "an entry at another position")
        return e

    c = bundle["completeness"]
    ce = included(c["commitment"])
    need(ce["stream"] == LEDGER_STREAM and ce["event_type"] == "ledger.stream_heads" and ce["kind"] == 0,
         "the commitment is not a ledger.stream_heads entry of the ledger's stream")
    need(ce["position"] + 1 == size, "the commitment is not the checkpoint's last entry")
    salt, payload = ce["envelope"][:32], ce["envelope"][32:]
    need(blake3.blake3(b"chronicle.payload-commitment.v1\n" + salt + payload).digest() == ce["commitment"],
         "the commitment's payload is not the one its entry signs")
    committed = json.loads(payload)
    heads_root, complete_at = bytes.fromhex(committed["root"]), committed["size"]

    stream = bytes.fromhex(bundle["stream"])
    entries = [included(p) for p in bundle["entries"]]
    need(all(e["stream"] == stream for e in entries), "an entry of another stream")
    version = check_head(c["stream_head"], heads_root, stream, entries, "stream")
    need(len(entries) == version + 1, "entries beyond the committed head")
    registry = [included(p) for p in bundle["registry"]]
    need(all(e["stream"] == REGISTRY_STREAM for e in registry), "a registry entry of another stream")
    check_head(c["registry_head"], heads_root, REGISTRY_STREAM, registry, "registry")
    print(f"complete: {version + 1} entries of stream {bundle['stream']} among the log's first {complete_at}")


if __name__ == "__main__":
    try:
        main(sys.argv[1], sys.argv[2])
    except Incomplete as e:
        print(f"INCOMPLETE: {e}")
        sys.exit(1)
