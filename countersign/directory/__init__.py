"""The directory's logic above its store: fuzzy matching, the planner's lookups, money in a base currency."""
