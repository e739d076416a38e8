"""The resource types the fake serves and the discovery documents built from them.

Each type is keyed by (group, plural): two groups that both define InferencePool are two stores,
as two CRDs are in a real cluster. Serving of a group/version can be switched off to emulate a
CRD that is not installed: its paths answer 404 and discovery omits it.
"""

STD_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class ResourceType:
    def __init__(self, group, version, plural, kind, namespaced, singular=None, short_names=(),
                 verbs=None, status_subresource=False, stored=True, fields=(), categories=()):
        self.group = group
        self.version = version
        self.plural = plural
        self.kind = kind
        self.namespaced = namespaced
        self.singular = singular or kind.lower()
        self.short_names = list(short_names)
        self.verbs = list(verbs) if verbs is not None else list(STD_VERBS)
        self.status_subresource = status_subresource
        # Review types (TokenReview, SubjectAccessReview) are computed, never stored.
        self.stored = stored
        # Field selectors beyond metadata.name/metadata.namespace that the real server accepts.
        self.fields = ("metadata.name", "metadata.namespace") + tuple(fields)
        self.categories = list(categories)
        # Built into the real API server (not a CRD): list items omit kind/apiVersion.
        self.builtin = not group.startswith("inference.") and group != "monitoring.coreos.com"

    @property
    def gv(self):
        return self.version if not self.group else self.group + "/" + self.version

    @property
    def api_version(self):
        return self.gv

    @property
    def list_kind(self):
        return self.kind + "List"

    @property
    def key(self):
        return (self.group, self.plural)

    def resource_entries(self):
        entry = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs,
        }
        if self.short_names:
            entry["shortNames"] = self.short_names
        if self.categories:
            entry["categories"] = self.categories
        out = [entry]
        if self.status_subresource:
            out.append({"name": self.plural + "/status", "singularName": "",
                        "namespaced": self.namespaced, "kind": self.kind,
                        "verbs": ["get", "patch", "update"]})
        return out


POD_FIELDS = ("spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
              "spec.serviceAccountName", "spec.hostNetwork", "status.phase", "status.podIP",
              "status.nominatedNodeName")

TYPES = [
    ResourceType("", "v1", "pods", "Pod", True, short_names=["po"], status_subresource=True,
                 fields=POD_FIELDS, categories=["all"]),
    ResourceType("", "v1", "namespaces", "Namespace", False, short_names=["ns"],
                 status_subresource=True, fields=("status.phase",)),
    ResourceType("", "v1", "nodes", "Node", False, short_names=["no"], status_subresource=True,
                 fields=("spec.unschedulable",)),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, short_names=["sa"]),
    ResourceType("", "v1", "secrets", "Secret", True, fields=("type",)),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, short_names=["cm"]),
    # kubectl describe lists an object's events with these field selectors.
    ResourceType("", "v1", "events", "Event", True, short_names=["ev"],
                 fields=("involvedObject.kind", "involvedObject.namespace",
                         "involvedObject.name", "involvedObject.uid",
                         "involvedObject.apiVersion", "involvedObject.resourceVersion",
                         "involvedObject.fieldPath", "reason", "reportingComponent", "source",
                         "type")),
    # What deploy/daemonset renders (deploy/check.sh applies it here): stored, no controllers.
    ResourceType("", "v1", "services", "Service", True, short_names=["svc"],
                 status_subresource=True, categories=["all"]),
    ResourceType("apps", "v1", "daemonsets", "DaemonSet", True, short_names=["ds"],
                 status_subresource=True, categories=["all"]),
    ResourceType("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False,
                 short_names=["pc"]),
    ResourceType("monitoring.coreos.com", "v1", "podmonitors", "PodMonitor", True,
                 short_names=["pmon"]),
    ResourceType("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule", True,
                 short_names=["promrule"]),
    ResourceType("inference.networking.k8s.io", "v1", "inferencepools", "InferencePool", True,
                 status_subresource=True),
    ResourceType("inference.networking.x-k8s.io", "v1alpha2", "inferencepools", "InferencePool",
                 True, status_subresource=True),
    ResourceType("inference.networking.x-k8s.io", "v1alpha2", "inferencemodels",
                 "InferenceModel", True, status_subresource=True),
    ResourceType("inference.networking.x-k8s.io", "v1alpha2", "inferencemodelrewrites",
                 "InferenceModelRewrite", True, status_subresource=True),
    ResourceType("authentication.k8s.io", "v1", "tokenreviews", "TokenReview", False,
                 verbs=["create"], stored=False),
    ResourceType("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview",
                 False, verbs=["create"], stored=False),
    ResourceType("authorization.k8s.io", "v1", "selfsubjectaccessreviews",
                 "SelfSubjectAccessReview", False, verbs=["create"], stored=False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding",
                 False),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role", True),
    ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", True),
]


class Registry:
    """Lookup of resource types by path pieces and by apiVersion/kind."""

    def __init__(self, types=TYPES):
        self.types = list(types)
        self.by_gv = {}
        for rt in self.types:
            self.by_gv.setdefault(rt.gv, []).append(rt)

    def group_versions(self):
        return list(self.by_gv.keys())

    def lookup(self, gv, plural):
        for rt in self.by_gv.get(gv, []):
            if rt.plural == plural:
                return rt
        return None

    def by_kind(self, api_version, kind):
        for rt in self.by_gv.get(api_version, []):
            if rt.kind == kind:
                return rt
        return None

    def get(self, group, plural):
        for rt in self.types:
            if rt.group == group and rt.plural == plural:
                return rt
        return None

    # Discovery documents (legacy, non-aggregated: kubectl falls back to them when the answer's
    # Content-Type is plain application/json).

    def api_versions(self, server_address):
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                            "serverAddress": server_address}],
        }

    def api_group(self, group, enabled):
        versions = [gv for gv in self.by_gv if gv.startswith(group + "/") and gv in enabled]
        if not versions:
            return None
        entries = [{"groupVersion": gv, "version": gv.split("/", 1)[1]} for gv in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
                "preferredVersion": entries[0]}

    def api_group_list(self, enabled):
        groups = []
        seen = []
        for gv in self.by_gv:
            if "/" not in gv:
                continue
            group = gv.split("/", 1)[0]
            if group in seen:
                continue
            seen.append(group)
            doc = self.api_group(group, enabled)
            if doc:
                del doc["kind"]
                del doc["apiVersion"]
                groups.append(doc)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def resource_list(self, gv):
        resources = []
        for rt in self.by_gv.get(gv, []):
            resources.extend(rt.resource_entries())
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                "resources": resources}
