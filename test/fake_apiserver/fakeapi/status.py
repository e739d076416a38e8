"""Errors in the API server's `Status` shape (kind Status, apiVersion v1, status Failure)."""

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


class ApiError(Exception):
    """Raised anywhere in request handling; the handler turns it into a Status response."""

    def __init__(self, code, message, reason=None, details=None, headers=None):
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.reason = reason or REASONS.get(self.code, "")
        self.details = details
        self.headers = headers or {}

    def status(self):
        return failure(self.code, self.message, self.reason, self.details)


def failure(code, message, reason=None, details=None):
    obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason if reason is not None else REASONS.get(code, ""),
    }
    if details is not None:
        obj["details"] = details
    obj["code"] = code
    return obj


def success(details=None):
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details is not None:
        obj["details"] = details
    return obj


def not_found_resource():
    # What the real server answers for a group/version or resource it does not serve (a
    # missing CRD): the generic NotFound with empty details.
    return ApiError(404, "the server could not find the requested resource", "NotFound", {})


def qualified(rt):
    """`pods` or `inferencepools.inference.networking.k8s.io`, as the real messages name them."""
    return rt.plural if not rt.group else rt.plural + "." + rt.group


def details(rt, name):
    d = {"name": name}
    if rt.group:
        d["group"] = rt.group
    d["kind"] = rt.plural
    return d


def object_not_found(rt, name):
    return ApiError(404, '%s "%s" not found' % (qualified(rt), name), "NotFound", details(rt, name))


def already_exists(rt, name):
    return ApiError(409, '%s "%s" already exists' % (qualified(rt), name), "AlreadyExists",
                    details(rt, name))


def conflict(rt, name):
    return ApiError(409, 'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    "please apply your changes to the latest version and try again"
                    % (qualified(rt), name), "Conflict", details(rt, name))


def invalid(rt, name, causes):
    """422 Invalid with field causes: causes is a list of (field, message)."""
    d = details(rt, name)
    d["causes"] = [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes]
    kind = rt.kind
    msg = '%s "%s" is invalid: %s' % (kind, name, ", ".join("%s: %s" % c for c in causes))
    return ApiError(422, msg, "Invalid", d)


def bad_request(message):
    return ApiError(400, message, "BadRequest")
