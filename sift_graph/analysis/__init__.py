"""The stages of ``analyze`` (``docs/analyze.md``), one module each, run in this order by
:func:`sift_graph.pipeline.run_analysis`:

``options``    every input checked once, before any work;
``discovery``  run folders under the PATHs (symlinks followed once) and their table labels;
``loading``    run folders read and validated (bad ones reported, the rest kept);
``cache``      per-snapshot results keyed on content and metric code;
``compute``    the missing snapshots, in local worker processes or on a Dask cluster;
``tables``     ``layers.csv`` and ``summary.csv``;
``figures``    the figures, their file names, and what could not be drawn.
"""
