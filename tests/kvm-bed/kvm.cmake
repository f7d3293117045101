# kvm-labelled tests: tests that boot real VMs. The kvm.bed.start fixture
# probes /dev/kvm once per test run (capsem-kvm-probe) and records a policy in
# ${CMAKE_BINARY_DIR}/kvm-bed-state: "direct" when the host runs guest ring-0
# code natively, "bed" when it has to be the KVM test bed (QEMU emulating a
# machine whose Linux has a real /dev/kvm; started once here and stopped by
# kvm.bed.stop), "skip" when neither works (kvm tests then exit 77 saying why).
# Each kvm test runs through tests/kvm-bed/kvm-exec, which applies the policy.
#
#   capsem_add_kvm_test(<name> <command> [args...])
#
# <command> and args may use generator expressions ($<TARGET_FILE:capsem>).
# Tests run with the build directory as working directory; keep their files
# under it (the bed shares the source and build trees with the host, but its
# /tmp is its own).

set(CAPSEM_KVM_BED_DIR ${CMAKE_CURRENT_LIST_DIR} CACHE INTERNAL "tests/kvm-bed")
set(CAPSEM_BED_STATE_DIR ${CMAKE_BINARY_DIR}/kvm-bed-state CACHE INTERNAL "bed state")
set(CAPSEM_KVM_TEST_TIMEOUT 900 CACHE STRING "Timeout (s) of each kvm-labelled test")
set(CAPSEM_KVM_ENV "CAPSEM_BED_STATE=${CAPSEM_BED_STATE_DIR}"
    "CAPSEM_BED_RW=${CMAKE_SOURCE_DIR}:${CMAKE_BINARY_DIR}"
    "CAPSEM_CACHE_DIR=${CAPSEM_CACHE_DIR}"
    # One asset-hash cache for every kvm test of this build: hashing the Debian
    # image inside the emulated bed takes minutes, so only the first boot pays.
    "CAPSEM_INTEGRITY_CACHE=${CMAKE_BINARY_DIR}/integrity-cache.json" CACHE INTERNAL "kvm test env")

# The system interpreter when there is one: a version-manager shim costs
# ~0.25 s per call.
find_program(CAPSEM_BED_PYTHON NAMES python3 PATHS /usr/bin NO_DEFAULT_PATH)
if(NOT CAPSEM_BED_PYTHON)
  find_program(CAPSEM_BED_PYTHON NAMES python3)
endif()

if(TARGET capsem_vmm)
  add_executable(capsem-kvm-probe ${CMAKE_CURRENT_LIST_DIR}/kvm-probe-main.c)
  target_link_libraries(capsem-kvm-probe PRIVATE capsem_vmm)
endif()

function(capsem_add_kvm_test name)
  if(NOT ARGN)
    message(FATAL_ERROR "capsem_add_kvm_test(${name}): no command")
  endif()
  add_test(NAME ${name} COMMAND ${CAPSEM_KVM_BED_DIR}/kvm-exec -- ${ARGN}
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(${name} PROPERTIES LABELS kvm RESOURCE_LOCK kvm
                       TIMEOUT ${CAPSEM_KVM_TEST_TIMEOUT} FIXTURES_REQUIRED kvm_bed
                       SKIP_RETURN_CODE 77 ENVIRONMENT "${CAPSEM_KVM_ENV}")
endfunction()

if(CAPSEM_BED_PYTHON)
  # The bed's exec server on the host: protocol, statuses, bad requests.
  add_test(NAME unit.kvm_bed.server COMMAND ${CAPSEM_BED_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/test_server.py)
  set_tests_properties(unit.kvm_bed.server PROPERTIES LABELS unit TIMEOUT 120)
endif()

if(TARGET capsem-kvm-probe AND CAPSEM_BED_PYTHON)
  # Cold: fetch and prepare the bed's kernel and initramfs, then boot it.
  add_test(NAME kvm.bed.start
           COMMAND ${CAPSEM_BED_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/bed fixture-start
                   --probe $<TARGET_FILE:capsem-kvm-probe>
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(kvm.bed.start PROPERTIES LABELS kvm FIXTURES_SETUP kvm_bed
                       TIMEOUT 900 ENVIRONMENT "${CAPSEM_KVM_ENV}")
  add_test(NAME kvm.bed.stop
           COMMAND ${CAPSEM_BED_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/bed fixture-stop
           WORKING_DIRECTORY ${CMAKE_BINARY_DIR})
  set_tests_properties(kvm.bed.stop PROPERTIES LABELS kvm FIXTURES_CLEANUP kvm_bed
                       TIMEOUT 120 ENVIRONMENT "${CAPSEM_KVM_ENV}")

  # Proves the bed (or the direct path): KVM is native where the tests run,
  # the working directory is the same, the build tree is writable.
  capsem_add_kvm_test(kvm.bed.smoke ${CMAKE_CURRENT_LIST_DIR}/smoke
                      $<TARGET_FILE:capsem-kvm-probe> ${CMAKE_BINARY_DIR})
endif()
