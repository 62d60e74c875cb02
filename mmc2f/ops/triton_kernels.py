# Copyright (c) mmc2f contributors. All rights reserved.
"""Triton kernels of :func:`mmc2f.ops.dwconv_modulate`: a k x k depthwise
conv (stride 1, zero padding k // 2) with the modulation around it.

Two kernels make the forward and the whole backward::

    _dwconv_kernel      out = (conv(x [* g], w) + b) [* m]
        forward:        Z  = (conv(x, w) + b) * V
        dV:             dV = (conv(x, w) + b) * dZ        (A recomputed)
        dx:             dx = conv(dZ * V, rot180(w))      (dA made on load)
    _dwconv_wgrad_kernel  dw[i, j] = sum_p dA[p] x[p + (i, j) - k // 2],
                          db = sum_p dA[p]                 (dA = dZ * V)

Design (one thread per channel, every value of a channel in its registers)
--------------------------------------------------------------------------
A program owns ``BLOCK_C`` channels (one per thread: the weights broadcast to
no other thread and need no shared memory) and an output tile of ``ROWS``
rows by ``BLOCK_W`` columns. Its registers hold, per channel, ``ROWS`` input
row windows of ``BLOCK_W + k - 1`` values, ``ROWS * BLOCK_W`` accumulators
and one tap row of ``k`` weights, as tuples that the compiler unrolls:

- the tap rows ``i`` are a static loop; at each one the windows slide down
  by one input row, so each input row of the tile's halo is loaded once
  (``ROWS + k - 1`` rows of ``BLOCK_W + k - 1`` values), and each value feeds
  up to ``BLOCK_W`` taps along W from registers;
- the ``k`` weights of tap row ``i`` are loaded once per program and feed
  ``ROWS * BLOCK_W`` outputs;
- a tap row whose input rows all lie in the zero padding is skipped (its
  multiply-adds are not issued); along W, padded columns load zeros.

Per program and channel that is ``ROWS * BLOCK_W * k * k`` multiply-adds for
``k * k`` weight loads (float32) and ``(ROWS + k - 1) * (BLOCK_W + k - 1)``
input loads (two for dx: dZ and V). At k = 11, ROWS = 4, BLOCK_W = 8:
3872 multiply-adds, 121 + 252 loads, 10.4 multiply-adds per load (2.6 per
byte in float32, 3.9 with float16 activations); the earlier inference
kernel loaded the input and the weights for every multiply-add (0.3 per
byte). ``tools/analysis/kernel_report.py`` counts the compiled code's
instructions instead, the loop body once and the epilogue (V's loads, the
stores) too: 2.4 multiply-adds per byte for the float16 forward.

The weight gradient swaps the roles: a program owns ``TAP_ROWS`` tap rows,
``BLOCK_C`` channels and a strip of ``BLOCK_W`` columns over a chunk of rows
(a runtime loop). Per output row it loads dA (dZ and V, ``BLOCK_W`` values
each) and one new input row window (the windows slide as in the forward) and
adds ``TAP_ROWS * k * BLOCK_W`` products into ``TAP_ROWS * k`` accumulators.
Each program writes its partial sums, which
:func:`~.modulate.dwconv_modulate` adds over the programs with
``torch.sum``, in a fixed order: two runs give bit-identical gradients (no
atomics).

All sums and products are float32 whatever the dtypes of the tensors.
Tensors are addressed through their strides: channels-last (coalesced: a
warp reads 32 adjacent channels of a pixel) and NCHW (correct, but each
load is scattered) run the same code.
"""
import triton
import triton.language as tl


@triton.jit
def _dwconv_kernel(x_ptr, g_ptr, w_ptr, b_ptr, m_ptr, out_ptr, C, H, W,
                   stride_n, stride_c, stride_h, stride_w,
                   K: tl.constexpr, PRE: tl.constexpr,
                   HAS_BIAS: tl.constexpr, POST: tl.constexpr,
                   ROWS: tl.constexpr, BLOCK_W: tl.constexpr,
                   GROUP_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """``out = (conv(x [* g], w) + b) [* m]`` on ``GROUP_W`` tiles side by
    side (see the module docstring). ``w`` is (K * K, C) float32,
    tap-major."""
    # Row tiles vary fastest (the grid's first dimension has no 65535
    # limit): the programs that run together share most of their input rows
    # in L2.
    num_h = tl.cdiv(H, ROWS)
    h0 = tl.program_id(0) % num_h * ROWS
    # Offsets within one image are int32 (fewer registers than pointers).
    image = (tl.program_id(0) // num_h).to(tl.int64) * stride_n
    x_ptr += image
    g_ptr += image
    m_ptr += image
    out_ptr += image
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_offs = (c * stride_c)[None, :]
    c_ok = (c < C)[None, :]
    # The first columns of the program's tiles, (GROUP_W, 1).
    cols = ((tl.program_id(1) * GROUP_W + tl.arange(0, GROUP_W)) *
            BLOCK_W)[:, None]
    P: tl.constexpr = K // 2

    # No device functions: each call costs the interpreter milliseconds.
    zero = tl.zeros([GROUP_W, BLOCK_C], dtype=tl.float32)
    if HAS_BIAS:
        zero += tl.load(b_ptr + c, mask=c < C, other=0.).to(
            tl.float32)[None, :]
    acc = ()
    for t in tl.static_range(ROWS * BLOCK_W):
        acc = acc + (zero, )
    # Tap row i of output row h0 + o reads input row h0 + o + i - P:
    # windows[o] holds it. The loop slides the windows down one input row
    # per step, from ROWS - 1 steps before the first tap row that meets the
    # image (they only load) to the last one; tap rows whose input rows all
    # lie in the zero padding are never visited.
    i_first = tl.maximum(P - h0 - (ROWS - 1), 0)
    i_last = tl.minimum(H - 1 + P - h0, K - 1)
    # The columns around each tile, their offsets and their masks (zero
    # outside the image: the conv's padding), hoisted out of the loop.
    col_offs = ()
    col_ok = ()
    window = ()  # BLOCK_W + K - 1 values of an input row around each tile
    for u in tl.static_range(BLOCK_W + K - 1):
        col = cols + (u - P)
        col_offs = col_offs + (c_offs + col * stride_w, )
        col_ok = col_ok + (c_ok & (col >= 0) & (col < W), )
        window = window + (tl.zeros([GROUP_W, BLOCK_C], dtype=tl.float32), )
    windows = ()
    for o in tl.static_range(ROWS):
        windows = windows + (window, )
    for i in range(i_first - (ROWS - 1), i_last + 1):
        row = h0 + ROWS - 1 + i - P
        row_ok = (row >= 0) & (row < H)
        window = ()
        for u in tl.static_range(BLOCK_W + K - 1):
            offs = col_offs[u] + row * stride_h
            ok = col_ok[u] & row_ok
            value = tl.load(x_ptr + offs, mask=ok, other=0.).to(tl.float32)
            if PRE:
                value *= tl.load(g_ptr + offs, mask=ok,
                                 other=0.).to(tl.float32)
            window = window + (value, )
        shifted = ()
        for o in tl.static_range(1, ROWS):
            shifted = shifted + (windows[o], )
        windows = shifted + (window, )
        if i >= i_first:
            taps = ()
            for j in tl.static_range(K):
                tap = tl.load(w_ptr + (i * K + j) * C + c, mask=c < C,
                              other=0.)
                taps = taps + (tap[None, :], )
            summed = ()
            for o in tl.static_range(ROWS):
                for q in tl.static_range(BLOCK_W):
                    s = acc[o * BLOCK_W + q]
                    for j in tl.static_range(K):
                        s = tl.fma(windows[o][q + j], taps[j], s)
                    summed = summed + (s, )
            acc = summed

    for o in tl.static_range(ROWS):
        for q in tl.static_range(BLOCK_W):  # column q is u = q + P
            ok = col_ok[q + P] & (h0 + o < H)
            offs = col_offs[q + P] + (h0 + o) * stride_h
            value = acc[o * BLOCK_W + q]
            if POST:
                value *= tl.load(m_ptr + offs, mask=ok,
                                 other=0.).to(tl.float32)
            tl.store(out_ptr + offs, value.to(out_ptr.dtype.element_ty),
                     mask=ok)


@triton.jit
def _dwconv_wgrad_kernel(g_ptr, v_ptr, x_ptr, part_ptr, C, H, W,
                         stride_n, stride_c, stride_h, stride_w,
                         rows_per_program,
                         K: tl.constexpr, TAP_ROWS: tl.constexpr,
                         HAS_BIAS: tl.constexpr, BLOCK_W: tl.constexpr,
                         GROUP_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """Partial sums of the weight and bias gradients over ``GROUP_W``
    strips of columns and a chunk of rows, for ``TAP_ROWS`` tap rows from
    ``program_id(1) * TAP_ROWS``: ``part[program_id(0), i * K + j, c]``
    (the bias's in row ``K * K``, by the programs of the first tap rows)."""
    num_w = tl.cdiv(W, BLOCK_W * GROUP_W)
    num_chunks = tl.cdiv(H, rows_per_program)
    strip = tl.program_id(0)
    chunk = strip // num_w % num_chunks
    image = (strip // (num_w * num_chunks)).to(tl.int64) * stride_n
    g_ptr += image
    v_ptr += image
    x_ptr += image
    c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_offs = (c * stride_c)[None, :]
    c_ok = (c < C)[None, :]
    cols = ((strip % num_w * GROUP_W + tl.arange(0, GROUP_W)) *
            BLOCK_W)[:, None]
    i0 = tl.program_id(1) * TAP_ROWS
    P: tl.constexpr = K // 2
    h_start = chunk * rows_per_program
    h_end = tl.minimum(h_start + rows_per_program, H)

    bias_acc = tl.zeros([GROUP_W, BLOCK_C], dtype=tl.float32)
    acc = ()
    for t in tl.static_range(TAP_ROWS * K):
        acc = acc + (bias_acc, )
    # windows[t] is input row h + i0 + t - P at output row h; the first
    # TAP_ROWS - 1 steps only load. Columns as in _dwconv_kernel.
    col_offs = ()
    col_ok = ()
    x_row = ()
    for u in tl.static_range(BLOCK_W + K - 1):
        col = cols + (u - P)
        col_offs = col_offs + (c_offs + col * stride_w, )
        col_ok = col_ok + (c_ok & (col >= 0) & (col < W), )
        x_row = x_row + (bias_acc, )
    windows = ()
    for t in tl.static_range(TAP_ROWS):
        windows = windows + (x_row, )
    for h in range(h_start - (TAP_ROWS - 1), h_end):
        row = h + i0 + TAP_ROWS - 1 - P
        row_ok = (row >= 0) & (row < H)
        x_row = ()
        for u in tl.static_range(BLOCK_W + K - 1):
            x_row = x_row + (tl.load(
                x_ptr + col_offs[u] + row * stride_h,
                mask=col_ok[u] & row_ok, other=0.).to(tl.float32), )
        shifted = ()
        for t in tl.static_range(1, TAP_ROWS):
            shifted = shifted + (windows[t], )
        windows = shifted + (x_row, )
        if h >= h_start:
            grads = ()  # dA = dZ * V along the strip
            for q in tl.static_range(BLOCK_W):  # column q is u = q + P
                offs = col_offs[q + P] + h * stride_h
                grad = tl.load(g_ptr + offs, mask=col_ok[q + P],
                               other=0.).to(tl.float32)
                grad *= tl.load(v_ptr + offs, mask=col_ok[q + P],
                                other=0.).to(tl.float32)
                grads = grads + (grad, )
                bias_acc += grad
            summed = ()
            for t in tl.static_range(TAP_ROWS):
                for j in tl.static_range(K):
                    s = acc[t * K + j]
                    for q in tl.static_range(BLOCK_W):
                        s = tl.fma(grads[q], windows[t][q + j], s)
                    summed = summed + (s, )
            acc = summed

    part_ptr += strip.to(tl.int64) * (K * K + 1) * C + c
    for t in tl.static_range(TAP_ROWS):
        for j in tl.static_range(K):
            tl.store(part_ptr + ((i0 + t) * K + j) * C,
                     tl.sum(acc[t * K + j], axis=0),
                     mask=(c < C) & (i0 + t < K))
    if HAS_BIAS:
        tl.store(part_ptr + K * K * C, tl.sum(bias_acc, axis=0),
                 mask=(c < C) & (tl.program_id(1) == 0))
