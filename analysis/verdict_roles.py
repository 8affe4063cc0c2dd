"""How the verdict names the arms that are not treatments, in its tables and in the forest plot
(analysis/verdict.py decides the roles)."""

ROLE_MARK = {"aa": " (A/A)", "reference": " (reference)"}
