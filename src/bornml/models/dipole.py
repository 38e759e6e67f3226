"""Dipole (λ=1) and combined (q+p) kernel models — work in progress."""

from .monopole import MonopoleModel


class DipoleModel(MonopoleModel):
    model_type = "p"


class CombinedModel(MonopoleModel):
    model_type = "q+p"
