"""The monitor's config root. It is apart from conf/ because its ``model=URI`` key would collide
with the training ``model/`` group there."""
