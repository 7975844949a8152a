"""The trust base: what confines, judges and lets through.

Access (who may), the sandbox and its supervisor, the agent's guard and environment, the model gateway and
what it can price, the redactor, the secret scan and the sanitizer of untrusted text, trees as data, the
approval grammar, Discord's command limits, and the proof's observer (the loopback Discord), runner and
launcher. Every module here is a protected path (`improve.protected_paths`): a change to one needs a run
started with the security flag and the security form of approval.
"""
