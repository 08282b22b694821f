"""The optional compiled CPU kernels of RBM training (:mod:`.native`) and the products of sparse
binary unit states with a weight matrix (:mod:`.sparse_matmul`)."""
