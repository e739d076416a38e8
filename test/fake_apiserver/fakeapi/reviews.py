"""TokenReview, SubjectAccessReview and SelfSubjectAccessReview: computed answers, never stored
(the real server answers with the request object plus its status)."""

import copy

from .status import bad_request


def _spec(body, kind, api_version):
    if not isinstance(body, dict) or not isinstance(body.get("spec"), dict):
        raise bad_request("%s: spec is required" % kind)
    if body.get("kind", kind) != kind or body.get("apiVersion", api_version) != api_version:
        raise bad_request("the API version in the data (%s) does not match the expected API "
                          "version (%s)" % (body.get("apiVersion"), api_version))
    return body["spec"]


def _answer(body, kind, api_version, status):
    out = {"kind": kind, "apiVersion": api_version,
           "metadata": copy.deepcopy(body.get("metadata") or {})}
    out["metadata"].setdefault("creationTimestamp", None)
    out["spec"] = copy.deepcopy(body["spec"])
    out["status"] = status
    return out


def token_review(authn, body):
    api_version = "authentication.k8s.io/v1"
    spec = _spec(body, "TokenReview", api_version)
    token = spec.get("token", "")
    if not isinstance(token, str) or not token:
        raise bad_request('TokenReview.authentication.k8s.io "" is invalid: spec.token: '
                          "Required value: token must not be empty")
    ident = authn.lookup_token(token)
    if ident is None:
        # As the real server: `authenticated` is omitted (false) and `user` is empty.
        status = {"user": {}, "error": "[invalid bearer token, token lookup failed]"}
    else:
        status = {"authenticated": True, "user": ident.user_info()}
        if spec.get("audiences"):
            status["audiences"] = list(spec["audiences"])
    return _answer(body, "TokenReview", api_version, status)


def _attrs(spec):
    ra = spec.get("resourceAttributes")
    nra = spec.get("nonResourceAttributes")
    if (ra is None) == (nra is None):
        raise bad_request("exactly one of nonResourceAttributes or resourceAttributes must be "
                          "specified")
    if ra is not None:
        if not isinstance(ra, dict):
            raise bad_request("resourceAttributes must be an object")
        return {"namespace": ra.get("namespace", ""), "verb": ra.get("verb", ""),
                "group": ra.get("group", ""), "resource": ra.get("resource", ""),
                "subresource": ra.get("subresource", ""), "name": ra.get("name", "")}, None
    if not isinstance(nra, dict):
        raise bad_request("nonResourceAttributes must be an object")
    return None, {"path": nra.get("path", ""), "verb": nra.get("verb", "")}


def _status(allowed, reason):
    status = {"allowed": bool(allowed)}
    if reason:
        status["reason"] = reason
    return status


def subject_access_review(authz, body):
    api_version = "authorization.k8s.io/v1"
    spec = _spec(body, "SubjectAccessReview", api_version)
    if not spec.get("user") and not spec.get("groups"):
        raise bad_request('SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: '
                          "Invalid value: \"\": at least one of user or group must be specified")
    ra, nra = _attrs(spec)
    allowed, reason = authz.decide(spec.get("user", ""), spec.get("groups") or [], ra, nra)
    return _answer(body, "SubjectAccessReview", api_version, _status(allowed, reason))


def self_subject_access_review(authz, ident, body):
    api_version = "authorization.k8s.io/v1"
    spec = _spec(body, "SelfSubjectAccessReview", api_version)
    ra, nra = _attrs(spec)
    allowed, reason = authz.decide(ident.user, ident.groups, ra, nra)
    return _answer(body, "SelfSubjectAccessReview", api_version, _status(allowed, reason))
