"""Objects, the one global resourceVersion, the bounded event history and the open watches.

Every write takes the store's lock, bumps the global resourceVersion and appends one event to the
history; watchers wait on the same condition. `compacted_rv` is the oldest resourceVersion a
watch can resume from: every event after it is still in the history. The history is capped
(oldest events drop off and compacted_rv moves forward), and /fake/compact drops all of it.
Stored objects are never mutated in place (a write stores a new dict), so an event can hand its
object to many watchers without copying.
"""

import collections
import threading
import time


def now_rfc3339(offset=0.0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


class Event:
    __slots__ = ("rv", "rkey", "type", "obj", "old")

    def __init__(self, rv, rkey, etype, obj, old):
        self.rv = rv
        self.rkey = rkey
        self.type = etype
        self.obj = obj
        self.old = old


class Watch:
    """One open watch stream; the handler that serves it owns the socket."""

    def __init__(self, rt, namespace, label_match, field_match, rv, bookmarks, deadline, conn,
                 user, target):
        self.rt = rt
        self.namespace = namespace
        self.label_match = label_match
        self.field_match = field_match
        self.rv = rv
        self.bookmarks = bookmarks
        self.deadline = deadline
        self.conn = conn
        self.user = user
        self.target = target
        self.started = time.time()
        self.closed = False  # set by close-watches / stop / disable-group / shutdown
        self.abrupt = True  # closed without the terminating chunk
        self.midobject = False  # and after the first half of an event line
        self.bookmark_now = False
        self.inject_error = None  # a Status to send as an ERROR event, then end the stream

    def matches(self, obj):
        md = obj.get("metadata", {})
        if self.namespace and md.get("namespace") != self.namespace:
            return False
        return self.label_match(md.get("labels")) and self.field_match(obj)


class Store:
    def __init__(self, history_cap):
        self.cond = threading.Condition()
        self.rv = 100
        self.objects = collections.defaultdict(dict)  # rkey -> {(ns, name): obj}
        self.history = collections.deque()
        self.history_cap = max(1, history_cap)
        self.compacted_rv = self.rv
        self.watches = set()

    # All methods below expect the caller to hold self.cond unless they say otherwise.

    def next_rv(self):
        self.rv += 1
        return self.rv

    def get(self, rkey, ns, name):
        return self.objects[rkey].get((ns or "", name))

    def items(self, rkey, ns=None):
        objs = self.objects[rkey]
        keys = sorted(k for k in objs if ns is None or k[0] == ns)
        return [objs[k] for k in keys]

    def put(self, rkey, obj, etype, old=None):
        """Store obj (ADDED/MODIFIED) with a new resourceVersion and record the event."""
        rv = self.next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        md = obj["metadata"]
        self.objects[rkey][(md.get("namespace", ""), md["name"])] = obj
        self._record(Event(rv, rkey, etype, obj, old))
        return obj

    def remove(self, rkey, ns, name):
        old = self.objects[rkey].pop((ns or "", name), None)
        if old is None:
            return None
        rv = self.next_rv()
        gone = dict(old)
        gone["metadata"] = dict(old["metadata"], resourceVersion=str(rv))
        self._record(Event(rv, rkey, "DELETED", gone, None))
        return gone

    def _record(self, ev):
        self.history.append(ev)
        while len(self.history) > self.history_cap:
            dropped = self.history.popleft()
            self.compacted_rv = dropped.rv
        self.cond.notify_all()

    def compact(self):
        self.history.clear()
        self.compacted_rv = self.rv
        self.cond.notify_all()

    def events_after(self, rv):
        """Events with resourceVersion > rv, oldest first (caller checked compaction)."""
        out = []
        for ev in reversed(self.history):
            if ev.rv <= rv:
                break
            out.append(ev)
        out.reverse()
        return out

    def close_watches(self, pred=lambda w: True, abrupt=True, midobject=False):
        n = 0
        for w in list(self.watches):
            if pred(w) and not w.closed:
                w.closed = True
                w.abrupt = abrupt
                w.midobject = midobject
                n += 1
        self.cond.notify_all()
        return n
