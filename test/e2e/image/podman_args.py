#!/usr/bin/env python3
"""Turns the rendered infertap DaemonSet into the `podman run` flags that give a container the
same security context, mounts, seccomp profile and PID namespace (test/e2e/image_e2e.sh).

    podman_args.py RENDERED.json OUTDIR NODE_NAME

RENDERED.json: the JSON array of `kubectl kustomize deploy/daemonset`. Writes OUTDIR/seccomp.json
(the profile from the ConfigMap the DaemonSet's init container installs) and prints one podman
flag per line, then `--` and the container args. Every field of the pod and container spec that
matters for running the agent is mapped; a field this script does not know is an error (exit 1),
so the test fails when the DaemonSet grows something the test does not reproduce.
"""
import json
import os
import sys

# Pod spec fields: mapped below, or without effect on a single container run by podman.
POD_KNOWN = {"serviceAccountName", "priorityClassName", "hostPID", "hostNetwork", "tolerations",
             "initContainers", "containers", "volumes"}
CTR_KNOWN = {"name", "image", "args", "env", "ports", "livenessProbe", "readinessProbe",
             "resources", "securityContext", "volumeMounts"}
SEC_KNOWN = {"runAsUser", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities",
             "seccompProfile", "privileged"}


def die(msg):
    print("podman_args: " + msg, file=sys.stderr)
    sys.exit(1)


def main():
    objs = json.load(open(sys.argv[1]))
    outdir, node = sys.argv[2], sys.argv[3]
    ds = [o for o in objs if o["kind"] == "DaemonSet" and o["metadata"]["name"] == "infertap"]
    if len(ds) != 1:
        die("want exactly one DaemonSet infertap")
    pod = ds[0]["spec"]["template"]["spec"]
    extra = set(pod) - POD_KNOWN
    if extra:
        die("pod spec fields not reproduced by the test: %s" % sorted(extra))
    ctrs = [c for c in pod["containers"] if c["name"] == "infertap"]
    if len(pod["containers"]) != 1 or not ctrs:
        die("want exactly one container named infertap")
    c = ctrs[0]
    extra = set(c) - CTR_KNOWN
    if extra:
        die("container fields not reproduced by the test: %s" % sorted(extra))
    flags = []
    if pod.get("hostPID"):
        flags.append("--pid=host")
    if pod.get("hostNetwork"):
        die("hostNetwork: true is not what the test reproduces (it runs the agent in a pod network)")

    sc = c.get("securityContext", {})
    extra = set(sc) - SEC_KNOWN
    if extra:
        die("securityContext fields not reproduced by the test: %s" % sorted(extra))
    if sc.get("privileged"):
        flags.append("--privileged")
    if "runAsUser" in sc:
        flags.append("--user=%d" % sc["runAsUser"])
    if sc.get("allowPrivilegeEscalation") is False:
        flags.append("--security-opt=no-new-privileges")
    if sc.get("readOnlyRootFilesystem"):
        flags.append("--read-only")
    caps = sc.get("capabilities", {})
    for d in caps.get("drop", []):
        flags.append("--cap-drop=" + d.lower())
    for a in caps.get("add", []):
        flags.append("--cap-add=CAP_" + a.upper())
    prof = sc.get("seccompProfile", {})
    if prof.get("type") == "Localhost":
        # The profile file the init container copies to /var/lib/kubelet/seccomp/<localhostProfile>:
        # which ConfigMap key lands at that path is read from the init container and the volumes.
        want = prof["localhostProfile"]
        content = localhost_profile(pod, objs, want)
        path = os.path.join(outdir, "seccomp.json")
        with open(path, "w") as f:
            f.write(content)
        flags.append("--security-opt=seccomp=" + path)
    elif prof.get("type") == "Unconfined":
        flags.append("--security-opt=seccomp=unconfined")
    elif prof:
        die("seccompProfile %s not reproduced" % prof)

    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for m in c.get("volumeMounts", []):
        v = vols.get(m["name"])
        if v is None:
            die("volumeMount %s has no volume" % m["name"])
        if "hostPath" not in v:
            die("volume %s is not a hostPath: not reproduced" % m["name"])
        opt = "ro" if m.get("readOnly") else "rw"
        flags.append("--volume=%s:%s:%s" % (v["hostPath"]["path"], m["mountPath"], opt))

    for e in c.get("env", []):
        if "value" in e:
            flags.append("--env=%s=%s" % (e["name"], e["value"]))
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName":
            flags.append("--env=%s=%s" % (e["name"], node))
        else:
            die("env %s: only values and spec.nodeName are reproduced" % e["name"])

    lim = c.get("resources", {}).get("limits", {})
    if "memory" in lim:
        flags.append("--memory=" + lim["memory"].replace("Mi", "m").replace("Gi", "g"))
    print("\n".join(flags))
    print("--")
    print("\n".join(c.get("args", [])))


def localhost_profile(pod, objs, want):
    for ic in pod.get("initContainers", []):
        cmd = ic.get("command", [])
        if len(cmd) != 3 or cmd[0] != "cp":
            continue
        src, dst = cmd[1], cmd[2]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        src_vol = dst_vol = None
        for m in ic.get("volumeMounts", []):
            if src.startswith(m["mountPath"] + "/"):
                src_vol, src_key = vols[m["name"]], src[len(m["mountPath"]) + 1:]
            if dst.startswith(m["mountPath"] + "/"):
                dst_vol, dst_rest = vols[m["name"]], dst[len(m["mountPath"]) + 1:]
        if not src_vol or not dst_vol or "configMap" not in src_vol or "hostPath" not in dst_vol:
            continue
        host_dst = os.path.join(dst_vol["hostPath"]["path"], dst_rest)
        if host_dst != os.path.join("/var/lib/kubelet/seccomp", want):
            die("the init container installs %s, the container wants %s" % (host_dst, want))
        cm = [o for o in objs if o["kind"] == "ConfigMap"
              and o["metadata"]["name"] == src_vol["configMap"]["name"]]
        if len(cm) != 1 or src_key not in cm[0].get("data", {}):
            die("ConfigMap %s has no key %s" % (src_vol["configMap"]["name"], src_key))
        return cm[0]["data"][src_key]
    die("no init container installs the Localhost seccomp profile " + want)


if __name__ == "__main__":
    main()
