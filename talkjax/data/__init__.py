"""Data for talkjax: the synthetic talking-face corpus (``talkjax.data.synthetic``), preprocessing to
ArrayRecord, Grain loaders and samplers, and the embedded-corpus cache."""
