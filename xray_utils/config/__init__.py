"""Configuration: the paper's facts (`paper`), the profiles (`profiles`), folders (`paths`), seeds (`seeding`)."""
