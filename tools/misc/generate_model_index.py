# Copyright (c) mmc2f contributors. All rights reserved.
"""Write the metafiles, ``model-index.yml`` and the README tables from
``mmc2f/paper.py`` and ``mmc2f/zoo.py``, their one source.

    python tools/misc/generate_model_index.py [--check]

``--check`` writes nothing and exits 1 naming each file that differs from
what it would write.
"""
import argparse
import os.path as osp
import sys

from mmc2f.toolkit.model_index import generated_files

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='only report the files that are out of date')
    args = parser.parse_args()
    stale = []
    for path, text in generated_files(REPO).items():
        full = osp.join(REPO, path)
        old = open(full).read() if osp.exists(full) else None
        if old == text:
            continue
        stale.append(path)
        if not args.check:
            with open(full, 'w') as f:
                f.write(text)
    verb = 'out of date' if args.check else 'written'
    for path in stale:
        print(f'{verb}: {path}')
    if args.check and stale:
        print('Run python tools/misc/generate_model_index.py, and commit what '
              'it writes.', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
