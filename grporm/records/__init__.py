"""Files in and out: the one reader of what a user hands in (inputs.py), the typed run record (schema.py), atomic
local records (storage.py), and `grporm verify` (verify.py)."""
