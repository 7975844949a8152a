"""Evidence and localisation: what a run is shown before the agent starts — the incident, its
failing calls and tracebacks, the source and history around them — and where in the code the fault is
(`localise`: the suspects ranked from the recorded frames, the data flow into them and the handlers),
including what a complaint in plain words refers to (`target`). Deterministic: no model decides here.
"""
