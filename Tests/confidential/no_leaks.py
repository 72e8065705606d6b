"""Asserts that no file under the given paths holds a confidential model's plaintext or its data key.

    no_leaks.py --model PLAINTEXT.gguf --key KEYFILE [--newer MARKER] [--exclude PATH ...] PATH ...

A file fails when it starts with the GGUF magic ("GGUF"), or holds the model's first 64 bytes or a
64-byte window from the middle of its weights anywhere, or the data key's 32 bytes (raw, hex or
base64) anywhere. With --newer only files modified after MARKER are read (for shared places such as
/tmp). Prints one line per finding and "no leaks in N files" at the end; exits 1 on a finding.
"""
import argparse
import base64
import os
import sys


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--newer")
    parser.add_argument("--exclude", action="append", default=[])
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    with open(args.model, "rb") as f:
        head = f.read(64)
        f.seek(os.path.getsize(args.model) // 2)
        middle = f.read(64)
    key = open(args.key, "rb").read()
    needles = {"the model's first 64 bytes": head, "64 bytes of the model's weights": middle, "the data key": key,
               "the data key (hex)": key.hex().encode(), "the data key (base64)": base64.b64encode(key)}
    since = os.path.getmtime(args.newer) if args.newer else None
    excluded = [os.path.realpath(p) for p in args.exclude]
    findings, scanned = [], 0
    for root in args.paths:
        for directory, _, names in os.walk(root):
            for name in names:
                path = os.path.join(directory, name)
                real = os.path.realpath(path)
                if any(real == e or real.startswith(e + os.sep) for e in excluded):
                    continue
                try:
                    st = os.lstat(path)
                    if not os.path.isfile(path) or os.path.islink(path) or st.st_size > (1 << 30):
                        continue
                    if since is not None and st.st_mtime < since:
                        continue
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                scanned += 1
                if data.startswith(b"GGUF"):
                    findings.append(f"{path}: starts with the GGUF magic")
                for what, needle in needles.items():
                    if needle and needle in data:
                        findings.append(f"{path}: holds {what}")
    for line in findings:
        print("LEAK  " + line)
    print(f"no leaks in {scanned} files" if not findings else f"{len(findings)} leak(s) in {scanned} files")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
