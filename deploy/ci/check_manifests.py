"""Consistency checks of deploy/ that no off-the-shelf tool does; run by scripts/check-deploy.sh.

    check_manifests.py configmap [--write]     ConfigMap securenode-trust == the repo's profile and key
    check_manifests.py config-keys FILE...     each config has exactly the example's keys
    check_manifests.py admission               the ValidatingAdmissionPolicy's CEL, evaluated with
                                               cel-python: admits the DaemonSet's pod, refuses variants

Exit status 0 when every check passes; otherwise one line per failure on standard error.
"""

import copy
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "kubernetes"
CONFIGMAP = K8S / "20-configmap.yaml"
TRUST_FILES = {  # ConfigMap key -> repository file
    "generic-x86-uefi-secureboot.json": REPO / "firmware-profiles" / "generic-x86-uefi-secureboot.json",
    "publisher.pub.pem": REPO / "models" / "publisher.pub.pem",
}


def render_configmap() -> str:
    def indent(text: str) -> str:
        return "".join("    " + line if line.strip() else line for line in text.splitlines(True))

    head = CONFIGMAP.read_text().split("\ndata:\n", 1)[0]
    body = "".join(f"  {key}: |\n" + indent(path.read_text()) for key, path in TRUST_FILES.items())
    return head + "\ndata:\n" + body


def check_configmap(write: bool) -> list[str]:
    rendered = render_configmap()
    if write:
        CONFIGMAP.write_text(rendered)
        return []
    if CONFIGMAP.read_text() != rendered:
        return [f"{CONFIGMAP.relative_to(REPO)} is out of date with "
                + ", ".join(str(p.relative_to(REPO)) for p in TRUST_FILES.values())
                + ": run scripts/check-deploy.sh --update-configmap"]
    data = yaml.safe_load(rendered)["data"]
    return [f"ConfigMap key {k} does not round-trip" for k, p in TRUST_FILES.items() if data[k] != p.read_text()]


def key_paths(node, prefix=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + key
            yield from key_paths(value, prefix + key + ".")


def check_config_keys(files: list[str]) -> list[str]:
    example = set(key_paths(yaml.safe_load((REPO / "deploy" / "securenode.yaml.example").read_text())))
    optional = {k for k in example if k == "server.tls" or k.startswith("server.tls.")}
    problems = []
    for name in files:
        text = Path(name).read_text()
        doc = yaml.safe_load(text)
        if name.endswith(".yaml") and doc.get("kind") == "Secret":
            doc = yaml.safe_load(doc["stringData"]["securenode.yaml"])
        keys = set(key_paths(doc))
        for k in sorted((example - optional) - keys):
            problems.append(f"{name}: missing key {k}")
        for k in sorted(keys - example):
            problems.append(f"{name}: key {k} is not in deploy/securenode.yaml.example")
    return problems


def check_admission() -> list[str]:
    import celpy

    docs = list(yaml.safe_load_all((K8S / "80-admission-policy.yaml").read_text()))
    policy = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy")
    ds = yaml.safe_load((K8S / "40-daemonset.yaml").read_text())
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": ds["spec"]["template"]["metadata"],
           "spec": ds["spec"]["template"]["spec"]}
    env = celpy.Environment()

    def refusals(obj) -> list[str]:
        activation = {"object": celpy.json_to_cel(obj)}
        variables = {celpy.celtypes.StringType(v["name"]): env.program(env.compile(v["expression"])).evaluate(activation)
                     for v in policy["spec"].get("variables", [])}
        activation["variables"] = celpy.celtypes.MapType(variables)
        out = []
        for rule in policy["spec"]["validations"]:
            result = env.program(env.compile(rule["expression"])).evaluate(activation)
            if not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
                out.append(rule["message"])
        return out

    def variant(change):
        p = copy.deepcopy(pod)
        change(p["spec"])
        return p

    main, init = 0, 0
    must_refuse = {
        "privileged container": variant(lambda s: s["containers"][main]["securityContext"].update(privileged=True)),
        "hostPath /": variant(lambda s: s["volumes"].append({"name": "root", "hostPath": {"path": "/"}})),
        "hostPath state as DirectoryOrCreate": variant(
            lambda s: next(v for v in s["volumes"] if "hostPath" in v)["hostPath"].update(type="DirectoryOrCreate")),
        "hostPath CharDevice /dev/tpmrm0": variant(lambda s: s["volumes"].append(
            {"name": "tpm", "hostPath": {"path": "/dev/tpmrm0", "type": "CharDevice"}})),
        "hostNetwork": variant(lambda s: s.update(hostNetwork=True)),
        "hostPID": variant(lambda s: s.update(hostPID=True)),
        "init container adds SYS_ADMIN": variant(
            lambda s: s["initContainers"][init]["securityContext"]["capabilities"].update(add=["SYS_ADMIN"])),
        "init container without securityContext": variant(lambda s: s["initContainers"][init].pop("securityContext")),
        "allowPrivilegeEscalation true": variant(
            lambda s: s["containers"][main]["securityContext"].update(allowPrivilegeEscalation=True)),
        "pod without runAsNonRoot": variant(lambda s: s["securityContext"].pop("runAsNonRoot")),
    }
    problems = [f"admission policy refuses the DaemonSet's own pod: {m}" for m in refusals(pod)]
    for name, obj in must_refuse.items():
        if not refusals(obj):
            problems.append(f"admission policy admits a pod with {name}")
    if not problems:
        print(f"DaemonSet pod admitted; {len(must_refuse)} variants refused")
    return problems


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 64
    command, rest = argv[0], argv[1:]
    if command == "configmap":
        problems = check_configmap(write=rest == ["--write"])
    elif command == "config-keys":
        problems = check_config_keys(rest)
    elif command == "admission":
        problems = check_admission()
    else:
        print(__doc__, file=sys.stderr)
        return 64
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
