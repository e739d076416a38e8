"""Who is calling (bearer tokens, service-account token Secrets, client certificates) and what
RBAC lets them do, decided from the Roles/ClusterRoles and bindings the store holds.

The same decision answers SubjectAccessReviews and authorizes every ordinary request of a caller
that is not in system:masters, so a test can check that a ClusterRole is sufficient.
"""

import base64
import json
import secrets as pysecrets

RBAC = "rbac.authorization.k8s.io"
SA_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"


class Identity:
    def __init__(self, user, groups, uid="", via="token"):
        self.user = user
        self.groups = list(groups)
        if "system:authenticated" not in self.groups:
            self.groups.append("system:authenticated")
        self.uid = uid
        self.via = via

    @property
    def admin(self):
        return "system:masters" in self.groups

    def user_info(self):
        info = {"username": self.user}
        if self.uid:
            info["uid"] = self.uid
        info["groups"] = self.groups
        return info


def new_token(prefix="fake"):
    return "%s-%s" % (prefix, pysecrets.token_urlsafe(24))


def new_sa_token(namespace, name):
    """A JWT-shaped token (header.claims.signature), like the legacy token controller issues;
    the fake never verifies the signature, it looks the whole string up."""
    def b64(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")
    claims = {"iss": "kubernetes/serviceaccount",
              "kubernetes.io/serviceaccount/namespace": namespace,
              "kubernetes.io/serviceaccount/service-account.name": name,
              "sub": "system:serviceaccount:%s:%s" % (namespace, name)}
    return "%s.%s.%s" % (b64({"alg": "RS256", "kid": "fake"}), b64(claims),
                         pysecrets.token_urlsafe(32))


def sa_identity(namespace, name, uid=""):
    return Identity("system:serviceaccount:%s:%s" % (namespace, name),
                    ["system:serviceaccounts", "system:serviceaccounts:" + namespace], uid)


class Authenticator:
    """Tokens: a static map (the admin token, --state `tokens`, /fake/tokens) plus the tokens in
    service-account token Secrets whose ServiceAccount still exists."""

    def __init__(self, store):
        self.store = store
        self.static = {}  # token -> Identity

    def add_token(self, token, identity):
        self.static[token] = identity

    def remove_token(self, token):
        return self.static.pop(token, None) is not None

    def tokens_of(self, user):
        return [t for t, ident in self.static.items() if ident.user == user]

    def lookup_token(self, token):
        """Identity for a bearer token or None. Caller holds the store lock."""
        if not token:
            return None
        ident = self.static.get(token)
        if ident:
            return ident
        for sec in self.store.items(("", "secrets")):
            if sec.get("type") != SA_TOKEN_TYPE:
                continue
            data = sec.get("data") or {}
            try:
                value = base64.b64decode(data.get("token", "")).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            if value != token:
                continue
            md = sec["metadata"]
            sa_name = (md.get("annotations") or {}).get(SA_NAME_ANNOTATION, "")
            sa = self.store.get(("", "serviceaccounts"), md.get("namespace", ""), sa_name)
            if sa is None:
                return None
            return sa_identity(md.get("namespace", ""), sa_name, sa["metadata"].get("uid", ""))
        return None

    @staticmethod
    def from_cert(peercert):
        """CN is the user, each O a group (as the real x509 authenticator reads them)."""
        if not peercert:
            return None
        user, groups = None, []
        for rdn in peercert.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    user = value
                elif key == "organizationName":
                    groups.append(value)
        return Identity(user, groups, via="cert") if user else None


def _verb_ok(rule, verb):
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def _resource_ok(rule, attrs):
    groups = rule.get("apiGroups") or []
    if "*" not in groups and attrs.get("group", "") not in groups:
        return False
    resources = rule.get("resources") or []
    res = attrs.get("resource", "")
    sub = attrs.get("subresource", "")
    combined = res + "/" + sub if sub else res
    ok = False
    for r in resources:
        if r == "*" or r == combined or (sub and r == "*/" + sub) or (not sub and r == res):
            ok = True
            break
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    if names and attrs.get("name", "") not in names:
        return False
    return _verb_ok(rule, attrs.get("verb", ""))


def _nonresource_ok(rule, path, verb):
    if not _verb_ok(rule, verb):
        return False
    for u in rule.get("nonResourceURLs") or []:
        if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
            return True
    return False


def _subject_matches(subject, user, groups, binding_ns):
    kind = subject.get("kind")
    name = subject.get("name")
    if kind == "User":
        return name == user
    if kind == "Group":
        return name in groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_ns
        return user == "system:serviceaccount:%s:%s" % (ns, name)
    return False


class Authorizer:
    def __init__(self, store):
        self.store = store

    def decide(self, user, groups, resource_attrs=None, nonresource_attrs=None):
        """(allowed, reason). Caller holds the store lock."""
        groups = list(groups or [])
        if "system:masters" in groups:
            return True, ""
        cluster_scoped = resource_attrs is None or not resource_attrs.get("namespace")

        def rule_ok(rule):
            if resource_attrs is not None:
                return _resource_ok(rule, resource_attrs)
            return _nonresource_ok(rule, nonresource_attrs.get("path", ""),
                                   nonresource_attrs.get("verb", ""))

        def subj(b):
            return "%s %s" % (b[0], b[1])

        for crb in self.store.items((RBAC, "clusterrolebindings")):
            hit = self._binding_allows(crb, None, rule_ok, user, groups)
            if hit:
                return True, 'RBAC: allowed by ClusterRoleBinding "%s" of ClusterRole "%s" to %s' \
                    % (crb["metadata"]["name"], crb["roleRef"]["name"], subj(hit))
        if not cluster_scoped:
            ns = resource_attrs["namespace"]
            for rb in self.store.items((RBAC, "rolebindings"), ns):
                hit = self._binding_allows(rb, ns, rule_ok, user, groups)
                if hit:
                    return True, 'RBAC: allowed by RoleBinding "%s/%s" of %s "%s" to %s' % (
                        rb["metadata"]["name"], ns, rb["roleRef"].get("kind"),
                        rb["roleRef"]["name"], subj(hit))
        return False, ""

    def _binding_allows(self, binding, ns, rule_ok, user, groups):
        hit = None
        for s in binding.get("subjects") or []:
            if _subject_matches(s, user, groups, ns or ""):
                name = s.get("name")
                if s.get("kind") == "ServiceAccount":  # the real reason says name/namespace
                    name = "%s/%s" % (name, s.get("namespace") or ns or "")
                hit = (s.get("kind"), '"%s"' % name)
                break
        if not hit:
            return None
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role = self.store.get((RBAC, "clusterroles"), "", ref.get("name", ""))
        elif ref.get("kind") == "Role" and ns:
            role = self.store.get((RBAC, "roles"), ns, ref.get("name", ""))
        else:
            role = None
        if role is None:
            return None
        for rule in role.get("rules") or []:
            if rule_ok(rule):
                return hit
        return None


def forbidden_message(user, resource_attrs=None, nonresource_attrs=None):
    if resource_attrs is None:
        return 'forbidden: User "%s" cannot %s path "%s"' % (
            user, nonresource_attrs["verb"], nonresource_attrs["path"])
    a = resource_attrs
    res = a["resource"] + ("/" + a["subresource"] if a.get("subresource") else "")
    qual = a["resource"] + ("." + a["group"] if a.get("group") else "")
    head = '%s "%s" is forbidden' % (qual, a["name"]) if a.get("name") else "%s is forbidden" % qual
    scope = ("in the namespace \"%s\"" % a["namespace"]) if a.get("namespace") \
        else "at the cluster scope"
    return '%s: User "%s" cannot %s resource "%s" in API group "%s" %s' % (
        head, user, a["verb"], res, a.get("group", ""), scope)


def bootstrap_rbac():
    """The default ClusterRoles/bindings a real cluster has that matter here: discovery for every
    authenticated caller, self access reviews, cluster-admin for system:masters, and the
    auth-delegator role a metrics-protecting agent is bound to."""
    def role(name, rules):
        return {"apiVersion": RBAC + "/v1", "kind": "ClusterRole",
                "metadata": {"name": name,
                             "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "rules": rules}

    def binding(name, role_name, group):
        return {"apiVersion": RBAC + "/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": name,
                             "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role_name},
                "subjects": [{"apiGroup": RBAC, "kind": "Group", "name": group}]}

    return [
        role("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                               {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        binding("cluster-admin", "cluster-admin", "system:masters"),
        role("system:discovery", [{"nonResourceURLs": [
            "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*",
            "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        binding("system:discovery", "system:discovery", "system:authenticated"),
        role("system:basic-user", [{"apiGroups": ["authorization.k8s.io"],
                                    "resources": ["selfsubjectaccessreviews",
                                                  "selfsubjectrulesreviews"],
                                    "verbs": ["create"]}]),
        binding("system:basic-user", "system:basic-user", "system:authenticated"),
        role("system:auth-delegator", [
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"],
             "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"],
             "verbs": ["create"]}]),
    ]
