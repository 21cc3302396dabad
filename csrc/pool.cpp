// (not written yet)
#include "common.h"

namespace tg {

void register_pool(py::module_&) {}

}  // namespace tg
