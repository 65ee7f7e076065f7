"""The video stage: transitions between panels for the animatic (a blend, or AnimateDiff + SparseCtrl)."""
