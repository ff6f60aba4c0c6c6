"""A real Kubernetes control plane for tests: etcd and kube-apiserver built from their Go modules
(components), their PKI, the EncryptionConfiguration, and a reader for what etcd stores. Used by
the e2e, deployment and packaging suites."""
