"""Many machines on one: network namespaces, a server per host, partitions (issue 16)."""
