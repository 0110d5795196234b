"""Launch logic shipped in every package: platform detection, numactl/mpirun command building
and the distributed environment helper. Standard library only."""
