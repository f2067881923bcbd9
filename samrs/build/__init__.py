"""``samrs build``: plan -> sharded workers -> atomic commits -> finalize."""
