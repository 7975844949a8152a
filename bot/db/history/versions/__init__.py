"""Revisions `vNNNN_name.py`, revision id "NNNN", each revising the one numbered before it.

`0013` is the baseline: the schema the hand-written SQL migrations 0001–0013 left behind.
"""
