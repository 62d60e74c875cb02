# Copyright (c) mmc2f contributors. All rights reserved.
"""The benchmark behind ``tools/analysis/benchmark.py``, a module per job:

* :mod:`.spec`: a run as data (:class:`~.spec.RunSpec`), checked once;
* :mod:`.models`: building the models, configs and inputs of a run;
* :mod:`.numerics`: the check that each model computes the released function;
* :mod:`.timing`: the timed calls, round-robin;
* :mod:`.memory`: peak memory of a train step (a fresh process per model);
* :mod:`.floor`: the depthwise conv and modulation against the
  memory-bandwidth floor (``--floor``);
* :mod:`.onnx_check`: ONNX export against onnxruntime;
* :mod:`.report`: the tables;
* :mod:`.goals`: the project's performance goals as data, and ``--goals``;
* :mod:`.run` and :mod:`.cli`: one run end to end, and the command line.
"""
