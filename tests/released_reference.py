from mmc2f.testing.released_reference import *  # noqa: F401,F403

__all__ = ['released_layer_norm', 'released_block', 'released_forward',
           'released_stages',
           'make_released_state_dict', 'max_rel_error']
