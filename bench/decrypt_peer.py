"""Decrypts a SecureNode encrypted model (securenode.encrypted-model.v1) with Python `cryptography`
(OpenSSL's AES-256-GCM) and hashes every plaintext byte with hashlib's SHA-256, chunk by chunk, as
`securenode model verify --key` does; prints "<sha256 hex> <name>" per file. An independent reading
of the format (README "Confidential models"), used as the authenticated peer by bench/decrypt.sh.

    decrypt_peer.py ENCRYPTED_DIR KEY_FILE
"""
import hashlib
import json
import os
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def string(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


def main(directory, key_file):
    header = json.load(open(os.path.join(directory, "encrypted-model.json")))
    key = open(key_file, "rb").read()
    salt = bytes.fromhex(header["salt"])
    schema = header["schema"]

    def derive(purpose, length):
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=f"{schema} {purpose}".encode()).derive(key)

    if derive("key check", 16).hex() != header["keyCheck"]:
        sys.exit("wrong key")
    binding = string(schema) + string(header["cipher"]) + struct.pack(">Q", header["chunkBytes"]) + salt
    binding += struct.pack(">I", len(header["files"]))
    for f in header["files"]:
        binding += string(f["name"]) + struct.pack(">Q", f["bytes"]) + string(f["ciphertext"])
    digest = hashlib.sha256(binding).digest()
    aead = AESGCM(derive("chunk key", 32))
    size = header["chunkBytes"]
    for index, f in enumerate(header["files"]):
        chunks = max(1, -(-f["bytes"] // size))
        sha = hashlib.sha256()
        with open(os.path.join(directory, f["ciphertext"]), "rb") as source:
            for chunk in range(chunks):
                want = min(size, f["bytes"] - chunk * size)
                sealed = source.read(want + 16)
                nonce = struct.pack(">IQ", index, chunk)
                aad = digest + struct.pack(">IQB", index, chunk, 1 if chunk == chunks - 1 else 0)
                sha.update(aead.decrypt(nonce, sealed, aad))
        print(sha.hexdigest(), f["name"])


if __name__ == "__main__":
    main(*sys.argv[1:3])
