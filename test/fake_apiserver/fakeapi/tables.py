"""Server-side printing: a `meta.k8s.io/v1` Table when the client asks for one (kubectl get sends
`Accept: application/json;as=Table;v=v1;g=meta.k8s.io,...`), else the object unchanged."""

import calendar
import time

NAME_COL = {"name": "Name", "type": "string", "format": "name", "priority": 0,
            "description": "Name must be unique within a namespace."}
AGE_COL = {"name": "Age", "type": "string", "format": "", "priority": 0,
           "description": "CreationTimestamp is a timestamp representing the server time when "
                          "this object was created."}


def wants_table(accept):
    for part in accept.split(","):
        params = [p.strip() for p in part.split(";")]
        if "as=Table" in params and "g=meta.k8s.io" in params and \
                ("v=v1" in params or "v=v1beta1" in params):
            return "v1" if "v=v1" in params else "v1beta1"
    return None


def human_age(ts):
    if not ts:
        return "<unknown>"
    try:
        secs = int(time.time() - calendar.timegm(time.strptime(ts, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return "<invalid>"
    secs = max(0, secs)
    if secs < 120:
        return "%ds" % secs
    mins = secs // 60
    if mins < 10:
        return "%dm%ds" % (mins, secs % 60) if secs % 60 else "%dm" % mins
    if mins < 180:
        return "%dm" % mins
    hours = mins // 60
    if hours < 48:
        return "%dh" % hours
    return "%dd" % (hours // 24)


def _pod_cells(pod):
    spec = pod.get("spec") or {}
    st = pod.get("status") or {}
    containers = spec.get("containers") or []
    statuses = st.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount", 0)) for s in statuses)
    phase = st.get("reason") or st.get("phase") or "Unknown"
    if pod["metadata"].get("deletionTimestamp"):
        phase = "Terminating"
    return [pod["metadata"]["name"], "%d/%d" % (ready, len(containers)), phase, restarts,
            human_age(pod["metadata"].get("creationTimestamp")), st.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>"]


POD_COLS = [NAME_COL,
            {"name": "Ready", "type": "string", "format": "", "priority": 0,
             "description": "The aggregate readiness state of this pod for accepting traffic."},
            {"name": "Status", "type": "string", "format": "", "priority": 0,
             "description": "The aggregate status of the containers in this pod."},
            {"name": "Restarts", "type": "string", "format": "", "priority": 0,
             "description": "The number of times the containers in this pod have been restarted."},
            AGE_COL,
            {"name": "IP", "type": "string", "format": "", "priority": 1,
             "description": "IP address allocated to the pod."},
            {"name": "Node", "type": "string", "format": "", "priority": 1,
             "description": "Name of the Node this pod is scheduled on."}]


def _row(rt, obj, include):
    if rt.plural == "pods":
        cells = _pod_cells(obj)
    else:
        cells = [obj["metadata"]["name"], human_age(obj["metadata"].get("creationTimestamp"))]
    row = {"cells": cells}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": obj["metadata"]}
    return row


def maybe_table(rt, obj, accept, query, list_=False):
    version = wants_table(accept)
    if version is None or obj.get("kind") == "Status":
        return obj
    include = query.get("includeObject", "Metadata")
    items = obj["items"] if list_ else [obj]
    table = {"kind": "Table", "apiVersion": "meta.k8s.io/" + version,
             "metadata": dict(obj["metadata"]) if list_ else
             {"resourceVersion": obj["metadata"].get("resourceVersion", "")},
             "columnDefinitions": POD_COLS if rt.plural == "pods" else [NAME_COL, AGE_COL],
             "rows": [_row(rt, o, include) for o in items]}
    return table
