"""Lesions followed across studies: the pure, I/O-free core (docs/method.md section 5).

The pipeline hands in what it knows of the current study and of one prior study (as
`TimePoint`s) plus, when the two scans are in different frames of reference, a mapping found
elsewhere (a Spatial Registration object or a rigid registration). This package then links the
lesions (`matching.match_lesions`), says which tracking identity each current lesion carries
(`identity.carried_identities`) and computes lesion-level change (`change`) and the deltas of
the CD8 score and the features (`deltas`). It reads no files, talks to no server and imports
only the foundation, so every rule here is testable with plain numbers.
"""
