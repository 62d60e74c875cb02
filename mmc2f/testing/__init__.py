from .synthetic_data import make_ade_shapes, make_coco_shapes

__all__ = ['make_ade_shapes', 'make_coco_shapes']
