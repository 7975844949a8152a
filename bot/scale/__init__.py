"""Scale-out: several bot processes on one database — leadership and what only the leader does."""
