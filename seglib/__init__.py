"""seglib: the library behind the spine segmentation pipeline.

Data flows one way: files on disk -> split -> gray map and prepared arrays ->
training -> checkpoints and logs -> evaluation -> comparison. Stages in
`stages/` are thin entry points; everything they do lives here.
"""
