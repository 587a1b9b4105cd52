# ctest example_kge_plain / example_kge_augur_2nodes:
#   cmake -DKGE_GEN=... -DKGE_TRAIN=... -DKGE_OUT=dir -DKGE_BACKEND=plain
#         [-DAUGUR_RUN=.../augur-run] -P kge_test.cmake
# Generates a tiny knowledge graph in KGE_OUT and trains it for 2 epochs:
# with KGE_BACKEND=plain on plain arrays with 2 threads, with
# KGE_BACKEND=augur on 2 augur nodes of this host (augur-run -n 2).
# Fails unless kge-train exits 0 and the training loss went down
# (--check-decrease).
foreach(v KGE_GEN KGE_TRAIN KGE_OUT KGE_BACKEND)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "kge_test.cmake: ${v} is not set")
  endif()
endforeach()

execute_process(
  COMMAND ${KGE_GEN} -o ${KGE_OUT} --entities 500 --relations 20
          --train 6000 --valid 200 --test 500 --clusters 8 --seed 7
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "kge-gen failed (${rc})")
endif()

set(train_args ${KGE_OUT} --epochs 2 --dim 16 --block 32 --eval-triples 200
               --check-decrease --no-progress)
if(KGE_BACKEND STREQUAL "plain")
  execute_process(
    COMMAND ${KGE_TRAIN} ${train_args} --backend plain --workers 1
    RESULT_VARIABLE rc)
elseif(KGE_BACKEND STREQUAL "augur")
  if(NOT DEFINED AUGUR_RUN)
    message(FATAL_ERROR "kge_test.cmake: AUGUR_RUN is not set")
  endif()
  execute_process(
    COMMAND ${AUGUR_RUN} -n 2 --timeout 100
            ${KGE_TRAIN} ${train_args} --backend augur --intent-ahead 4
    RESULT_VARIABLE rc)
else()
  message(FATAL_ERROR "kge_test.cmake: KGE_BACKEND must be plain or augur")
endif()
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "kge-train --backend ${KGE_BACKEND} failed or the loss did not go down (${rc})")
endif()
