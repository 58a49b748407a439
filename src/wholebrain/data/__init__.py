"""Training data: manifest → subjects → conformed cache (→ sampler and augmentation).

``manifest`` reads and writes the table of subjects, ``layouts`` finds subjects in
common folder layouts (Mindboggle, FreeSurfer, FSL, BIDS), ``cache`` validates every
file and stores each subject conformed to the canvas so training never resamples.
"""
