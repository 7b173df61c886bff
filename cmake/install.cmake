# `cmake --install` support: the embedded SQLite API (cowbackup::sqlite),
# its public headers, the loadable extension, and a package config so that
# find_package(cowbackup) works. Included from vfs/CMakeLists.txt. All in
# the component "sqlite": cmake --install BUILD --component sqlite. The
# LMDB library is cmake/install_lmdb.cmake's, component "lmdb".
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS cowbackup_sqlite EXPORT cowbackupTargets
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT sqlite
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT sqlite
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES
  ${PROJECT_SOURCE_DIR}/include/cowbackup/sqlite.hpp
  ${PROJECT_SOURCE_DIR}/include/cowbackup/status.h
  ${PROJECT_SOURCE_DIR}/include/cowbackup/job.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/cowbackup COMPONENT sqlite)
install(EXPORT cowbackupTargets
  NAMESPACE cowbackup::
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cowbackup COMPONENT sqlite)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/cowbackupConfig.cmake.in
  ${PROJECT_BINARY_DIR}/cowbackupConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cowbackup)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/cowbackupConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/cowbackupConfig.cmake
              ${PROJECT_BINARY_DIR}/cowbackupConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cowbackup COMPONENT sqlite)
