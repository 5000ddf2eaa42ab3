"""A tiny Django app for the real-client suite: one model whose cached summary is
invalidated by a post_save receiver."""
