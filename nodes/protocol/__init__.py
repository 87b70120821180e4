"""The replication protocol's decisions as pure code (DESIGN §4): no I/O, no clock, no randomness.

Each module takes plain values and returns plain values ("sans-I/O", as h11 and
Patroni's quorum.py do it). The node runtime, the control plane's supervisor and the
deterministic simulator (tests/simulation/) all call these functions; nothing else
decides who leads, what is committed, or what a fence allows.

- quorum:   write quorum W, election quorum N - W + 1, what a choice tolerates
- commit:   the commit rule (leader + W current members, acknowledged in this term)
- election: election restriction on (last term, position) and election quorum
- fencing:  what a fence value allows a leader or a follower of a term to do
- lease:    a leader's lease, measured from when the renewal was sent
- identity: archive identity and position reports (new empty replicas, impossible claims)
- rejoin:   the last position where two logs agree
"""
