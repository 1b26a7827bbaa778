"""Configuration: the paper's facts (`paper`), the profiles (`profiles`), folders and
environment variables (`paths`), seeds (`seeding`), the one JSON converter (`jsonable`)."""
