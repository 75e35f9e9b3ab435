"""Numbers every recall metric shares, written once.

``ZERO_RECALL``: the value a zero per-class recall takes in the geometric and harmonic
means (METHOD.md section 2), so that one missed class lowers them instead of zeroing them.
``MANY_THRESHOLD`` / ``FEW_THRESHOLD``: the OLTR / decoupling groups by training count
(Many: more than 100 images, Few: fewer than 20, Medium: in between, inclusive).
"""

ZERO_RECALL = 1e-3
MANY_THRESHOLD = 100
FEW_THRESHOLD = 20
