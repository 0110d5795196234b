import pytest

from models.common import dist_env


def test_default_is_single_process():
    env = dist_env.from_environ({})
    assert (env.rank, env.world_size, env.local_rank, env.local_size) == (0, 1, 0, 1)
    assert env.is_primary and not env.is_distributed


def test_openmpi():
    env = dist_env.from_environ({"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_SIZE": "8",
                                 "OMPI_COMM_WORLD_LOCAL_RANK": "1",
                                 "OMPI_COMM_WORLD_LOCAL_SIZE": "4"})
    assert (env.rank, env.world_size, env.local_rank, env.local_size) == (5, 8, 1, 4)
    assert env.source == "openmpi" and not env.is_primary and env.is_distributed


def test_mpich_intel_mpi():
    env = dist_env.from_environ({"PMI_RANK": "2", "PMI_SIZE": "4", "MPI_LOCALRANKID": "0",
                                 "MPI_LOCALNRANKS": "2"})
    assert (env.rank, env.world_size, env.local_rank, env.local_size) == (2, 4, 0, 2)
    assert env.source == "pmi"


def test_pmi_without_local_ids_assumes_one_host():
    env = dist_env.from_environ({"PMI_RANK": "1", "PMI_SIZE": "2"})
    assert (env.local_rank, env.local_size) == (1, 2)


def test_torchrun():
    env = dist_env.from_environ({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1",
                                 "LOCAL_WORLD_SIZE": "2"})
    assert (env.rank, env.world_size, env.local_rank, env.local_size) == (3, 4, 1, 2)
    assert env.source == "torchrun"


def test_openmpi_wins_over_leftover_torchrun_vars():
    env = dist_env.from_environ({"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
                                 "RANK": "0", "WORLD_SIZE": "1"})
    assert (env.rank, env.world_size) == (1, 2)


def test_bad_values_name_the_variable():
    with pytest.raises(ValueError, match="PMI_RANK"):
        dist_env.from_environ({"PMI_RANK": "x", "PMI_SIZE": "2"})
    with pytest.raises(ValueError, match="outside"):
        dist_env.from_environ({"RANK": "4", "WORLD_SIZE": "4"})


def test_frozen():
    with pytest.raises(AttributeError):
        dist_env.from_environ({}).rank = 3
