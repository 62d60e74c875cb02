# Copyright (c) mmc2f contributors. All rights reserved.
"""What ``tools/train.py`` and ``tools/test.py`` share: the MMDetection CLI
applied to a config of any of the three task libraries, whose scope the
config itself names (``default_scope``)."""
import argparse
import datetime
import logging
import os
import os.path as osp
import sys
from typing import Callable, Dict, Sequence

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from .checks import (ConfigCheckError, check_config_variables, check_data,
                     check_data_files, check_feature_channels)


def _mmdet_show(cfg: Config, show_dir: str) -> None:
    cfg.default_hooks.visualization.update(draw=True, test_out_dir=show_dir)


def _mmseg_show(cfg: Config, show_dir: str) -> None:
    # mmseg's hook draws every 50th batch by default; --show-dir means all.
    cfg.default_hooks.visualization.update(draw=True, interval=1)
    cfg.visualizer.save_dir = show_dir


def _mmpretrain_show(cfg: Config, show_dir: str) -> None:
    cfg.default_hooks.visualization.update(enable=True, out_dir=show_dir,
                                           interval=1)


def _dump_metric(metric_type: str) -> Callable[[Config, str], None]:

    def add(cfg: Config, out: str) -> None:
        evaluator = cfg.test_evaluator
        metrics = evaluator if isinstance(evaluator, list) else [evaluator]
        cfg.test_evaluator = metrics + [dict(type=metric_type,
                                             out_file_path=out)]

    return add


def _mmseg_out(cfg: Config, out: str) -> None:
    cfg.test_evaluator.update(output_dir=out, keep_results=True)


# Per library: how --show-dir and --out reach its hooks and evaluators.
SCOPES: Dict[str, Dict[str, Callable[[Config, str], None]]] = {
    'mmdet': dict(show_dir=_mmdet_show, out=_dump_metric('DumpDetResults')),
    'mmseg': dict(show_dir=_mmseg_show, out=_mmseg_out),
    'mmpretrain': dict(show_dir=_mmpretrain_show,
                       out=_dump_metric('mmengine.DumpResults')),
}


def add_cfg_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_cfg.max_iters=100')


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--work-dir', help='directory of logs and outputs')
    add_cfg_options(parser)
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher (pytorch: torchrun; see tools/dist_*.sh)')
    parser.add_argument(
        '--skip-checks',
        action='store_true',
        help="skip mmc2f's checks of the config, its data and its model "
        '(tools/check_config.py runs them alone)')
    # torchrun passes --local-rank (or sets LOCAL_RANK) to each process.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def library_file(package: str, *parts: str) -> str:
    """A file an installed OpenMMLab library ships (``.mim/tools/...``,
    ``.mim/configs/...``): what its repository has under that path."""
    module = __import__(package)
    return osp.join(osp.dirname(module.__file__), '.mim', *parts)


def config_scope(cfg: Config, path: str) -> str:
    """The library the config belongs to (its ``default_scope``), one of
    :data:`SCOPES`; an error saying how to set it otherwise."""
    scope = cfg.get('default_scope')
    if scope not in SCOPES:
        raise ConfigCheckError(
            f'{path} has default_scope={scope!r}; mmc2f tools run '
            f'configs of {sorted(SCOPES)}: inherit one of their '
            "default_runtime configs, e.g. 'mmdet::_base_/default_runtime.py'")
    return scope


def load_config(args: argparse.Namespace) -> Config:
    """The config with the CLI's overrides, its scope checked."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    # data_root or classes that a child config, or the options, set anew
    # without the datasets that read them.
    if not args.skip_checks:
        check_config_variables(cfg, args.cfg_options)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    config_scope(cfg, args.config)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    return cfg


def _setup_cpu_distributed(cfg: Config) -> None:
    """``--launcher pytorch`` on a machine without an accelerator.

    mmengine 0.10.7 cannot do it: its ``init_dist`` calls
    ``torch.cuda.set_device`` whatever the backend, and its DDP wrapper gets
    ``device_ids=[LOCAL_RANK]``, which DDP refuses for a CPU model. So the
    process group is initialised here, from torchrun's environment (mmengine
    then skips its own), over gloo (NCCL needs GPUs), and DDP gets no
    device ids.
    """
    import torch.distributed as torch_dist
    from mmengine.logging import print_log
    from mmengine.registry import MODEL_WRAPPERS
    from torch.nn.parallel import DistributedDataParallel

    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = env_cfg.setdefault('dist_cfg', {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        print_log(
            'No GPU/NPU/MLU: distributed backend nccl replaced by gloo.',
            logger='current', level=logging.WARNING)
        dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        kwargs = dict(dist_cfg)
        if kwargs.get('timeout') is not None:
            kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
        torch_dist.init_process_group(**kwargs)

    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper_type = MODEL_WRAPPERS.get(
        wrapper.get('type', 'MMDistributedDataParallel'))
    if (isinstance(wrapper_type, type)
            and issubclass(wrapper_type, DistributedDataParallel)):
        wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


class _FormattedOnce(Config):
    """A Config that formats its text once per content. mmengine formats it
    with yapf (about a second for a detector's config) wherever the Runner
    asks: the log, the dumped config, the visualiser and every checkpoint's
    meta."""

    @property
    def pretty_text(self) -> str:
        key = repr(self._cfg_dict.to_dict())
        cached = self.__dict__.get('_formatted')
        if cached is None or cached[0] != key:
            cached = (key, super().pretty_text)
            # Config's __setattr__ would store it as a config key.
            object.__setattr__(self, '_formatted', cached)
        return cached[1]


def run_tool(main: Callable[[], None]) -> None:
    """A tool's ``main``; a refused config ends it with the check's message
    alone (exit status 1): the traceback would only bury the fix."""
    try:
        main()
    except ConfigCheckError as error:
        sys.exit(f'error: {error}')


def build_runner(cfg: Config,
                 checks: bool = True,
                 loops: Sequence[str] = ('train', 'test')) -> Runner:
    """The config's Runner; ``checks`` (off with ``--skip-checks``): the
    data that the ``loops`` read ('train' with its validation, 'test')
    before the model is built, the model before any data loads."""
    # mmc2f's safe checkpoint loader, for configs without custom_imports too.
    import mmc2f  # noqa: F401
    from mmengine.device import get_device
    if checks:
        # Before the model is built: missing data, and classes that the data
        # and the heads do not agree on.
        check_data_files(cfg, loops)
        check_data(cfg)
    if cfg.get('launcher') == 'pytorch' and get_device() == 'cpu':
        _setup_cpu_distributed(cfg)
    # The Runner deep-copies the config, keeping its class.
    object.__setattr__(cfg, '__class__', _FormattedOnce)
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        runner = RUNNERS.build(cfg)
    else:
        runner = Runner.from_cfg(cfg)
    if checks:
        # Before any data loads: a neck that cannot take the backbone's maps.
        check_feature_channels(cfg.model, runner.model)
    return runner
