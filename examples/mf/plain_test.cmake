# ctest example_mf_plain: cmake -DMF_GEN=... -DMF_TRAIN=... -DMF_OUT=prefix
#   -P plain_test.cmake
# Generates a tiny MF data set, trains 2 epochs with --backend plain on 2
# threads (DSGD) and fails unless the training RMSE went down.
foreach(v MF_GEN MF_TRAIN MF_OUT)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "plain_test.cmake: ${v} is not set")
  endif()
endforeach()

execute_process(
  COMMAND ${MF_GEN} -o ${MF_OUT} --rows 2000 --cols 200 --nnz 40000
          --test 4000 --seed 7
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mf-gen failed (${rc})")
endif()

execute_process(
  COMMAND ${MF_TRAIN} ${MF_OUT}.train.mm --test ${MF_OUT}.test.mm
          --backend plain --epochs 2 --workers 2 --check-decrease
          --no-progress
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mf-train --backend plain failed or the RMSE did not go down (${rc})")
endif()
