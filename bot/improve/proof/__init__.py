"""Proof of fix, judged from outside the code under test: the replay of recorded calls against a bot
started from each tree (`replay`, planned by `replay_plan`: the failing calls, the held-out ones
(`heldout`), their `neighbours` and the calls that worked), how a replayed call is judged (`judge`), the
regression test's run, and the verdict they add up to (`verdict`), taken by the `prover`.
"""
