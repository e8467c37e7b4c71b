"""The one adapter to the Kubernetes API (client, informers, work queue, events, leases)."""
