"""Every speed path and every private torch API of rnnclf (docs/architecture-accel.md).

Importing the package registers the custom ops of rnnclf/accel/ops.py (torch.ops.rnnclf.*), which
`fused_gru` and `recurrent_layer` call.
"""

from rnnclf.accel import ops  # noqa: F401  (registers torch.ops.rnnclf.*)
