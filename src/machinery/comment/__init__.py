"""``mlops comment``: the one sticky report comment on a merge/pull request."""
