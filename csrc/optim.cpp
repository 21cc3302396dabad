// (not written yet)
#include "common.h"

namespace tg {

void register_optim(py::module_&) {}

}  // namespace tg
