"""CI helpers both forges' jobs call through ``mlops ci ...`` (experiment tags, git pushes)."""
