"""labelSelector and fieldSelector query parameters, parsed as the real server parses them.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a` (exists), `!a`
(does not exist), joined by commas. Field selectors: `f=v`, `f==v`, `f!=v` joined by commas, on
the fields each type supports (others are a 400 "field label not supported").
"""

import re

from .status import bad_request

_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"


def _split_top(text):
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _check_key(key, text):
    if not re.fullmatch(_KEY, key):
        raise bad_request("unable to parse requirement: invalid label key \"%s\" in \"%s\""
                          % (key, text))


def _check_value(value, text):
    if len(value) > 63 or not re.fullmatch(_VALUE, value):
        raise bad_request("unable to parse requirement: invalid label value: \"%s\" in \"%s\""
                          % (value, text))


def parse_label_selector(text):
    """Returns a predicate on a labels dict; raises ApiError 400 on a malformed selector."""
    reqs = []
    for part in _split_top(text or ""):
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s*\((.*)\)", part)
        if m:
            key, op, vals = m.group(1), m.group(2), [v.strip() for v in m.group(3).split(",")]
            _check_key(key, text)
            for v in vals:
                _check_value(v, text)
            reqs.append((key, op, set(vals)))
            continue
        m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(\S*)", part)
        if m:
            key, op, val = m.group(1), m.group(2), m.group(3)
            _check_key(key, text)
            _check_value(val, text)
            reqs.append((key, "!=" if op == "!=" else "=", val))
            continue
        m = re.fullmatch(r"(!?)\s*([^=!\s()]+)", part)
        if m:
            _check_key(m.group(2), text)
            reqs.append((m.group(2), "!" if m.group(1) else "exists", None))
            continue
        raise bad_request("unable to parse requirement: found '%s', expected: identifier" % part)

    def match(labels):
        labels = labels or {}
        for key, op, val in reqs:
            present = key in labels
            if op == "=" and not (present and labels[key] == val):
                return False
            if op == "!=" and present and labels[key] == val:
                return False
            if op == "in" and not (present and labels[key] in val):
                return False
            if op == "notin" and present and labels[key] in val:
                return False
            if op == "exists" and not present:
                return False
            if op == "!" and present:
                return False
        return True

    return match


def field_value(obj, path):
    """The string value of a dotted field path as the real field selectors compare it."""
    cur = obj
    for piece in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(piece)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(text, rt):
    """Returns (predicate, exact metadata.name or None); raises ApiError 400."""
    reqs = []
    name = None
    for part in _split_top(text or ""):
        m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(.*)", part)
        if not m:
            raise bad_request("invalid selector: '%s'; can't understand '%s'" % (text, part))
        field, op, val = m.group(1), m.group(2), m.group(3)
        if field not in rt.fields:
            raise bad_request('field label not supported: %s' % field)
        neg = op == "!="
        reqs.append((field, neg, val))
        if field == "metadata.name" and not neg:
            name = val

    def match(obj):
        for field, neg, val in reqs:
            if (field_value(obj, field) == val) == neg:
                return False
        return True

    return match, name
